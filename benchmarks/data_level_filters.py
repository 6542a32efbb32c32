"""Data filters: wall time per 1,000 rows for every registered filter on PubMedQA and TAT-QA (finance).

For each task the pool is the train split (200 rows held out as dev, DSIR's target), cut to ``rows``.
Embedding-based filters share one embedding pass per task: its time is measured once (cold cache) and
reported apart, and ``total_s_per_1k`` adds it back for the methods that need embeddings. Model-based
filters (perplexity, IFD, LLM judge) run the reference LM (default ``smollm2-135m`` from the offline
zoo) on a smaller slice (``model_rows``) and are scaled to 1,000 rows; they are skipped, with a note,
when the zoo model is not there. The subset each filter keeps is also compared with random (Jaccard).

Records are cached per (task, method, settings) in benchmarks/records/data_filters/ (``--fresh`` redoes).

    python benchmarks/data_level_filters.py                          # both tasks, every filter
    python benchmarks/data_level_filters.py --tasks pubmedqa --methods kcenter,dsir --rows 300

Ranking stability (``--ranking``): the candidates' proxy ranking on each filter's subset against the
ranking on the whole (bounded) training split, with Kendall τ, top-1 and cost (damoc filter --compare
--candidates):

    python benchmarks/data_level_filters.py --ranking --tasks pubmedqa --methods random,kcenter,dsir,perplexity

A ``--tasks`` name that is a selection-suite task (``benchmarks/suite/``) reads the suite's training split
from the data cache; otherwise it is a damoc task (built-in name or file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from damoc.data.embed import MiniLMEmbedder, TfidfEmbedder, get_embedder, minilm_available
from damoc.data.filters import FILTERS, FilterContext, filter_names, make_filter
from damoc.io.files import read_json, write_json_atomic, write_text_atomic
from damoc.io.tasks import load_task

ROOT = Path(__file__).resolve().parent
RECORDS = ROOT / "records" / "data_filters"
RESULTS = ROOT / "results" / "data_filters.md"
START, END = "<!-- table:start -->", "<!-- table:end -->"  # the script rewrites only what lies between
TASKS = ["pubmedqa", "finance"]
EMBEDDING_METHODS = {"kcenter", "kmeans", "semdedup", "cluster-rank", "deita", "quality-kcenter"}
MODEL_METHODS = {"perplexity", "ifd", "llm-judge"}


def zoo_model_present(name: str) -> bool:
    path = Path(os.environ.get("DAMOC_ZOO_DIR", Path.home() / ".cache" / "damoc" / "zoo")) / name
    return (path / "config.json").is_file()


def _key(obj: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def _fresh_embedder(name: str):
    """A new embedder with an empty cache (so the first pass is timed cold)."""
    if name == "auto":
        name = "minilm" if minilm_available() else "tfidf"
    return MiniLMEmbedder() if name == "minilm" else TfidfEmbedder()


def run_filter_timing(
    task_names: list[str],
    rows: int = 1000,
    methods: list[str] | None = None,
    model_rows: int = 60,
    judge_rows: int = 30,
    embedder: str = "auto",
    reference_model: str = "smollm2-135m",
    budget: float = 0.1,
    seed: int = 0,
    fresh: bool = False,
) -> list[dict[str, Any]]:
    """Time every filter on each task; one record per (task, method), also cached as JSON."""
    methods = methods or filter_names()
    have_lm = Path(reference_model).is_dir() or zoo_model_present(reference_model)
    emb_name = get_embedder(embedder).name
    records: list[dict[str, Any]] = []
    for task_name in task_names:
        task = load_task(task_name, dev_size=200, seed=seed)
        pool = task.train[:rows]
        emb = _fresh_embedder(emb_name)
        emb.encode(
            ["warm-up: load the encoder and its libraries", "not timed"]
        )  # load time is not filter time
        t0, c0 = time.perf_counter(), time.process_time()
        x = emb.encode(FilterContext().texts(pool)) if set(methods) & EMBEDDING_METHODS else None
        embed_s, embed_cpu = time.perf_counter() - t0, time.process_time() - c0
        base = FilterContext(
            seed=seed, embedder=emb, embeddings=x, target=task.dev, reference_model=reference_model
        )
        random_sel = set(make_filter("random").select(pool, budget, base).indices)
        for name in methods:
            settings = {
                "task": task_name,
                "method": name,
                "rows": len(pool),
                "budget": budget,
                "seed": seed,
                "embedder": emb_name,
                "threads": torch.get_num_threads(),
            }
            n = len(pool)
            if name in MODEL_METHODS:
                n = min(len(pool), judge_rows if name == "llm-judge" else model_rows)
                settings.update(model=reference_model, model_rows=n)
            path = RECORDS / f"{task_name}-{name}-{_key(settings)}.json"
            if path.exists() and not fresh:
                records.append(read_json(path))
                print(f"{task_name:9} {name:16} cached")
                continue
            if name in MODEL_METHODS and not have_lm:
                rec = {**settings, "skipped": f"reference model {reference_model} not in the zoo cache"}
                records.append(rec)
                print(f"{task_name:9} {name:16} skipped: {rec['skipped']}")
                continue
            sub = pool[:n]
            ctx = FilterContext(
                seed=seed,
                embedder=emb,
                embeddings=x[:n] if x is not None else None,
                target=task.dev,
                reference_model=reference_model,
            )
            if name in MODEL_METHODS:
                ctx.reference_lm()  # load time is not filter time
            t0, c0 = time.perf_counter(), time.process_time()
            sel = make_filter(name).select(sub, budget, ctx)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            per_1k = wall * 1000 / n
            rec = {
                **settings,
                "family": FILTERS.entry(name).family,
                "code": FILTERS.get(name).code,
                "wall_s": round(wall, 3),
                "s_per_1k": round(per_1k, 3),
                "cpu_s_per_1k": round(cpu * 1000 / n, 3),
                "embed_s_per_1k": round(embed_s * 1000 / len(pool), 3) if name in EMBEDDING_METHODS else 0.0,
                "embed_cpu_s_per_1k": round(embed_cpu * 1000 / len(pool), 3)
                if name in EMBEDDING_METHODS
                else 0.0,
                "kept": len(sel.indices),
                "jaccard_vs_random": round(
                    len(random_sel & set(sel.indices)) / len(random_sel | set(sel.indices)), 3
                )
                if n == len(pool)
                else None,
                "info": {k: v for k, v in sel.info.items() if not isinstance(v, list)},
            }
            rec["total_s_per_1k"] = round(rec["s_per_1k"] + rec["embed_s_per_1k"], 3)
            rec["total_cpu_s_per_1k"] = round(rec["cpu_s_per_1k"] + rec["embed_cpu_s_per_1k"], 3)
            write_json_atomic(path, rec)
            records.append(rec)
            print(
                f"{task_name:9} {name:16} {per_1k:9.2f} s/1k rows (+{rec['embed_s_per_1k']:.2f} embedding) on {n} rows"
            )
    return records


def _short(info: dict[str, Any]) -> str:
    out = []
    for k, v in info.items():
        if isinstance(v, float):
            v = f"{v:.3g}"
        elif isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "none"
        out.append(f"{k}={v}")
    return "; ".join(out)


def write_results(table: str) -> None:
    """Put ``table`` between the markers of the results file, keeping the hand-written text around it."""
    block = f"{START}\n{table}{END}\n\n"
    if RESULTS.exists() and START in (old := RESULTS.read_text()) and END in old:
        head, rest = old.split(START, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = "# Data filters\n\n" + block
    write_text_atomic(RESULTS, text)


def render(records: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"Machine: {platform.machine()} CPU, 2 cores shared with other jobs; torch {torch.__version__}.",
        f"Command: `{command}`",
        "",
        "Wall = elapsed seconds; CPU = process CPU seconds (less sensitive to other jobs on the cores).",
        "",
        "| task | id | method | family | rows timed | filter wall s / 1k | + embedding wall s / 1k "
        "| total wall s / 1k | total CPU s / 1k | Jaccard vs random | what it found |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "skipped" in r:
            lines.append(f"| {r['task']} | | {r['method']} | | | skipped: {r['skipped']} | | | | | |")
            continue
        rows = r.get("model_rows", r["rows"])
        jac = "" if r.get("jaccard_vs_random") is None else f"{r['jaccard_vs_random']:.3f}"
        lines.append(
            f"| {r['task']} | {r['code']} | {r['method']} | {r['family']} | {rows} | {r['s_per_1k']:.2f} | "
            f"{r['embed_s_per_1k']:.2f} | {r['total_s_per_1k']:.2f} | {r['total_cpu_s_per_1k']:.2f} | {jac} | "
            f"{_short(r.get('info', {}))} |"
        )
    return "\n".join(lines) + "\n"


RANKING = RECORDS / "ranking"


def run_ranking(args) -> None:
    """Each filter's proxy ranking of the candidates against the whole training split's (and a truth's);
    the sweeps live in ``--run-dir`` (resumable), the report is copied to records/data_filters/ranking/."""
    import shutil

    from damoc.config import parse_config
    from damoc.select.filter_compare import FilterRankingConfig, run_filter_ranking

    suite = Path(os.environ.get("DAMOC_DATA_CACHE", Path.home() / ".cache" / "damoc" / "data")) / "suite"
    for task in args.tasks.split(","):
        # a selection-suite task name reads the suite's training split (benchmarks/suite/run.py data writes it)
        path = suite / task / "train.jsonl" if (suite / task / "train.jsonl").is_file() else Path(task)
        label = task if path.name == "train.jsonl" and path.parent.name == task else path.stem
        select = {
            "job": "select",
            "task": {"path": str(path), "max_rows": args.max_rows, "dev_size": args.dev_rows, "seed": args.seed},
            "candidates": args.candidates.split(","),
            "data": {"compress_rate": None},
            "model": {"layer_fraction": 0.0},
            "proxy": {"method": "lora", "epochs": args.epochs, "batch_size": 4, "max_length": 256,
                      "lr": 2e-4, "precision": args.precision},
            "eval": {"dev_rows": args.dev_rows, "max_length": 256, "batch_size": 8, "precision": args.precision},
            "run": {"threads": args.threads, "progress_s": 120},
            "seed": args.seed,
        }  # fmt: skip
        name = f"{label}-train{args.max_rows - args.dev_rows}-b{args.budget:g}-s{args.seed}"
        cfg = parse_config(
            FilterRankingConfig,
            {
                "select": select,
                "filters": args.methods.split(","),
                "budget": args.budget,
                "filter_options": {"embedder": args.embedder} if args.embedder != "auto" else {},
                "truth": args.truth,
                "out": str(Path(args.run_dir) / name),
            },
        )
        rep = run_filter_ranking(cfg, resume=True)
        RANKING.mkdir(parents=True, exist_ok=True)
        out = Path(cfg.out)
        for f, dest in (
            ("ranking.json", f"{name}.json"),
            ("ranking.md", f"{name}.md"),
            ("ranking.png", f"{name}.png"),
        ):
            if (out / f).is_file():
                shutil.copyfile(out / f, RANKING / dest)
        print((RANKING / f"{name}.md").read_text())
        print(f"whole-set sweep {rep.rows[0].cost_s:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--methods", default=None, help="comma-separated (default: all)")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--model-rows", type=int, default=60)
    ap.add_argument("--judge-rows", type=int, default=30)
    ap.add_argument("--embedder", default="auto")
    ap.add_argument("--reference-model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on shared cores)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached records")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite the results Markdown")
    ap.add_argument("--ranking", action="store_true", help="rank --candidates on each filter's subset")
    ap.add_argument("--candidates", default="smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b")
    ap.add_argument("--budget", type=float, default=12, help="--ranking: rows each filter keeps")
    ap.add_argument("--max-rows", type=int, default=90, help="--ranking: task rows read (train + dev)")
    ap.add_argument("--dev-rows", type=int, default=30, help="--ranking: held-out dev rows scored")
    ap.add_argument("--epochs", type=float, default=3.0, help="--ranking: proxy LoRA epochs")
    ap.add_argument("--precision", default="fp32", help="--ranking: proxy and scoring precision (fp32/bf16)")
    ap.add_argument("--truth", default=None, help="--ranking: truth scores file, leaderboard or records dir")
    ap.add_argument("--run-dir", default="runs/filter_ranking", help="--ranking: where the sweeps live")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DAMOC_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    if args.ranking:
        if args.methods is None:
            raise SystemExit("error: --ranking needs --methods")
        run_ranking(args)
        return
    records = run_filter_timing(
        args.tasks.split(","),
        rows=args.rows,
        methods=args.methods.split(",") if args.methods else None,
        model_rows=args.model_rows,
        judge_rows=args.judge_rows,
        embedder=args.embedder,
        reference_model=args.reference_model,
        fresh=args.fresh,
    )
    import sys

    text = render(records, "python " + " ".join(sys.argv))
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
