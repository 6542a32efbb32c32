"""Selection benchmark: does the cheap proxy rank the zoo models like full fine-tuning does?

Three zoo models (smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b) × five domains (PubMedQA, TAT-QA
finance, SQuAD v1.1 dev read from the PyPI sdist ``bigbench==1.0.0``, and two held out until the proxy
settings had been compared: XSum and qa_wikidata from the same sdist). The ground truth (full
fine-tune of every uncompressed model on a bounded training split) is cached under
``benchmarks/records/selection/groundtruth/`` and committed, so later runs reuse it.

    python benchmarks/selection.py --validate --truth-lrs 1e-5 5e-5   # everything (truth from the cache)
    python benchmarks/selection.py --stage groundtruth --truth-lrs 1e-5 5e-5  # only the full fine-tunes
    python benchmarks/selection.py --stage baselines             # zero-/few-shot of the uncompressed models
    python benchmarks/selection.py --stage proxy                 # the proxy sweep
    python benchmarks/selection.py --stage edge --threads 1      # extra rates at the grid's edges

``--truth-lrs`` fine-tunes each model once per rate and keeps its best dev score (without it: the single
rate 5e-5 of the first runs). Each stage resumes (records are the unit of work); the units a run did
not make are taken from the committed summary ``benchmarks/records/selection/<domain>.json``, which the
run then rewrites; figures go to stdout and ``figures.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records" / "selection"
RUNS = ROOT / "runs" / "selection"
MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]
DOMAINS = ["pubmedqa", "finance", "squad", "xsum", "wikidata"]
BIGBENCH = "bigbench==1.0.0"
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
SQUAD_MEMBER = "bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json"
# the held-out fourth domain (added after the proxy settings were compared on the first three): one-sentence
# news summaries (XSum, as BIG-bench's gem/xsum ships it), written as a user's own file with its own field names
XSUM_MEMBER = "bigbench/benchmark_tasks/gem/xsum/task.json"
# keep the article's first words: the summary follows the lead, and the prompt is cut from the left
XSUM_WORDS = 150
XSUM_FIELDS = {"id": "id", "question": "instruction", "context": "document", "answer": "summary"}
# the held-out fifth domain: closed-book general-knowledge completions (BIG-bench qa_wikidata), kept in its
# own field names (input, target, aliases)
WIKIDATA_MEMBER = "bigbench/benchmark_tasks/qa_wikidata/task.json"
WIKIDATA_FIELDS = {"id": "id", "question": "input", "context": None, "answer": "target"}

# The bounded ground truth (CPU): 120 training rows × 256 tokens, one epoch of full fine-tuning
# (bf16 autocast for proxy and ground truth alike: about 2x faster on an AVX512-BF16 CPU).
TRAIN_ROWS = 120
DEV_ROWS = 60
MAX_LENGTH = 256

# Proxy variants for the settings sweep (`--variant NAME`): overrides of the default proxy settings,
# each run in its own directory and scored against the same cached ground truth.
VARIANTS: dict[str, dict] = {
    "base": {},
    "lf125": {"model": {"layer_fraction": 0.125}},
    "lf0": {"model": {"layer_fraction": 0.0}},
    "rows20": {"data": {"budget": 0.2}},
    "lf125_rows20": {"model": {"layer_fraction": 0.125}, "data": {"budget": 0.2}},
    "ep3": {"proxy": {"epochs": 3.0}},
    "lf0_ep3": {"model": {"layer_fraction": 0.0}, "proxy": {"epochs": 3.0}},
    "lf125_ep3": {"model": {"layer_fraction": 0.125}, "proxy": {"epochs": 3.0}},
    "lr1e3": {"proxy": {"lr": 1e-3}},
    # no token compression: on CPU its scorer costs about half as much per row as the three LoRA fine-tunes
    "nocomp": {"data": {"compress_rate": None}},
    "lf0_ep3_nocomp": {
        "model": {"layer_fraction": 0.0},
        "proxy": {"epochs": 3.0},
        "data": {"compress_rate": None},
    },
    # the proxy fine-tune with the ground truth's own method and learning rate (on the compressed data)
    "full": {"proxy": {"method": "full", "lr": 5e-5}},
    "full_lf0": {"model": {"layer_fraction": 0.0}, "proxy": {"method": "full", "lr": 5e-5}},
    # a fixed proxy subset of 12 rows (the 120-row runs' 10%) whatever the training size (`--train-rows`):
    # the proxy's cost then stays put while the full fine-tunes grow with the data
    "rows12": {"data": {"budget": 12}},
    "rows12_lf0_ep3": {"model": {"layer_fraction": 0.0}, "proxy": {"epochs": 3.0}, "data": {"budget": 12}},
    # the same, its dev scoring under bf16 autocast (`eval.precision`; the ground truth stays fp32)
    "rows12_lf0_ep3_bf16": {
        "model": {"layer_fraction": 0.0},
        "proxy": {"epochs": 3.0},
        "data": {"budget": 12},
        "eval": {"precision": "bf16"},
    },
    # larger fixed proxy subsets (how the proxy's ranking moves with its row count; qa_wikidata at 1,200 rows)
    "rows24_lf0_ep3": {"model": {"layer_fraction": 0.0}, "proxy": {"epochs": 3.0}, "data": {"budget": 24}},
    "rows48_lf0_ep3": {"model": {"layer_fraction": 0.0}, "proxy": {"epochs": 3.0}, "data": {"budget": 48}},
}


def _seeded(settings: dict, seed: int) -> dict:
    """A variant under another seed: another random proxy subset, LoRA init and data order (the dev split,
    the ground truth and the baselines stay those of seed 0)."""
    return {**settings, "proxy": {**settings.get("proxy", {}), "seed": seed}, "seed": seed}


VARIANTS.update(
    {
        f"{name}_s{seed}": _seeded(VARIANTS[name], seed)
        for name in ("lf0_ep3", "base", "rows48_lf0_ep3", "rows12_lf0_ep3_bf16")
        for seed in (1, 2)
    }
)


# Grid-edge checks of the ground truth: one extra rate for the model nearest to overtaking a winner whose
# best rate sits at an end of the grid (`--stage edge`; records go to the same cache, summaries untouched).
EDGE_CHECKS = [
    ("pubmedqa", "smollm2-135m", 1e-4),
    ("finance", "smollm2-135m", 1e-4),
    ("squad", "smollm2-135m", 1e-4),
    ("finance", "gemma3-270m", 5e-6),
    ("squad", "gemma3-270m", 5e-6),
    # wikidata: Qwen2.5-Coder's best full fine-tune (1e-5) is worse than its own few-shot score
    ("wikidata", "qwen2.5-coder-0.5b", 5e-6),
    ("wikidata", "qwen2.5-coder-0.5b", 2e-6),  # 5e-6 was better again (0.507)
]


def edge_checks(domains: list[str], threads: int | None) -> None:
    from damoc.select.pipeline import run_select

    for domain, cand, lr in EDGE_CHECKS:
        if domain not in domains:
            continue
        cfg = domain_config(domain, True, threads, "base", [lr])
        cfg.candidates = [cand]
        cfg.run.run_dir = str(RUNS / f"{domain}@edge-{cand}-{lr:g}")
        board = run_select(cfg, resume=True, methods=["full"], retry_failed=True)
        rec = next(r for r in board.records if r.method == "full")
        print(f"edge check {domain} {cand} lr {lr:g}: {rec.status} {_fmt(rec.score, 4)} ({rec.wall_s:.0f} s)")


def find_bigbench_sdist() -> Path:
    """The bigbench sdist: from the damoc data cache, or downloaded there with pip (no install)."""
    cache = _data_cache()
    path = cache / "bigbench-1.0.0.tar.gz"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        BIGBENCH,
        "-d",
        str(cache),
    ]
    subprocess.run(cmd, check=False)
    if not path.is_file():
        # pip >= 25 refuses this sdist (its metadata declares a direct-URL dependency): read the file
        # link from the package index's simple page instead and check its published digest
        _download_from_index(path)
    if not path.is_file():
        raise SystemExit(f"could not download {BIGBENCH} into {cache}; put bigbench-1.0.0.tar.gz there")
    return path


def _download_from_index(path: Path) -> None:
    import hashlib
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        page = urllib.request.urlopen(f"{index}/bigbench/", timeout=60).read().decode()
        link = re.search(r'href="([^"]*/bigbench-1\.0\.0\.tar\.gz)#sha256=([0-9a-f]{64})', page)
        if link is None or link.group(2) != BIGBENCH_SHA256:
            return
        data = urllib.request.urlopen(link.group(1), timeout=300).read()
    except OSError as err:
        print(f"index download failed: {err}", file=sys.stderr)
        return
    if hashlib.sha256(data).hexdigest() == BIGBENCH_SHA256:
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)


def _bigbench_json(member_suffix: str) -> dict:
    """One JSON file of the bigbench sdist."""
    with tarfile.open(find_bigbench_sdist()) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(member_suffix))
        return json.load(tar.extractfile(member))  # type: ignore[arg-type]


def _data_cache() -> Path:
    return Path.home() / ".cache" / "damoc" / "data"


def _bigbench_task(filename: str, member_suffix: str, make_rows) -> Path:
    """A damoc JSONL task in the data cache, made once from one JSON file of the bigbench sdist."""
    out = _data_cache() / filename
    if not out.is_file():
        rows = make_rows(_bigbench_json(member_suffix))
        tmp = out.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(out)
    return out


def _squad_rows(data: dict) -> list[dict]:
    rows = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                texts = [a["text"] for a in qa["answers"]]
                aliases = sorted(set(texts) - {texts[0]})
                rows.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "context": para["context"],
                        "answer": texts[0],
                        "answer_aliases": aliases,
                        "title": article["title"],
                    }
                )
    return rows


def _xsum_rows(data: dict) -> list[dict]:
    return [
        {
            "id": f"xsum-{i}",
            "document": " ".join(ex["input"].split()[:XSUM_WORDS]),
            "instruction": "Summarize the news article in one sentence.",
            "summary": ex["target"] if isinstance(ex["target"], str) else ex["target"][0],
        }
        for i, ex in enumerate(data["examples"])
    ]


def _wikidata_rows(data: dict) -> list[dict]:
    rows = []
    for i, ex in enumerate(data["examples"]):
        targets = [ex["target"]] if isinstance(ex["target"], str) else list(ex["target"])
        rows.append(
            {"id": f"wikidata-{i}", "input": ex["input"], "target": targets[0], "aliases": targets[1:]}
        )
    return rows


def squad_task() -> Path:
    """SQuAD v1.1 dev as a damoc JSONL task (question, context, answer, answer_aliases)."""
    return _bigbench_task("squad_v1.1_dev.jsonl", SQUAD_MEMBER, _squad_rows)


def xsum_task() -> Path:
    """BIG-bench gem/xsum as a JSONL file with a user's field names (document, summary, instruction)."""
    return _bigbench_task(f"xsum_bigbench_{XSUM_WORDS}w.jsonl", XSUM_MEMBER, _xsum_rows)


def wikidata_task() -> Path:
    """BIG-bench qa_wikidata as JSONL with its own field names (input, target; the other targets as aliases)."""
    return _bigbench_task("qa_wikidata_bigbench.jsonl", WIKIDATA_MEMBER, _wikidata_rows)


def task_settings(domain: str) -> dict:
    if domain == "squad":
        return {"path": str(squad_task())}
    if domain == "xsum":
        return {"path": str(xsum_task()), "fields": XSUM_FIELDS}
    if domain == "wikidata":
        return {"path": str(wikidata_task()), "fields": WIKIDATA_FIELDS}
    return {"path": domain}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


# The committed ground truth was timed with the output head on every position (before the answer-only head,
# FinetuneConfig.head_positions); proxies and new ground truth keep that path so their times compare.
# What the answer-only head saves is measured on its own in benchmarks/finetune_speed.py.
HEAD_POSITIONS = "all"


def domain_config(
    domain: str,
    validate: bool,
    threads: int | None,
    variant: str = "base",
    truth_lrs: list[float] | None = None,
    models: list[str] | None = None,
    lane: str | None = None,
    train_rows: int = TRAIN_ROWS,
    head_positions: str = HEAD_POSITIONS,
):
    from damoc.select.config import SelectConfig

    data = {
        "job": "select",
        "task": {**task_settings(domain), "max_rows": train_rows + DEV_ROWS, "dev_size": DEV_ROWS, "seed": 0},
        "candidates": models or MODELS,
        "eval": {
            "metric": "answer_bpb",
            "dev_rows": DEV_ROWS,
            "max_length": MAX_LENGTH,
            "batch_size": 8,
            "few_shot_k": 2,
            "alias_field": {"squad": "answer_aliases", "wikidata": "aliases"}.get(domain),
            # as the records were made (the product's default is auto; variants set bf16 themselves)
            "precision": "fp32",
            "prompt_format": "raw",
        },
        "model": {"layer_fraction": 0.25, "calibration_rows": 8, "calibration_max_length": 128},
        "proxy": {
            "method": "lora",
            "epochs": 1.0,
            "batch_size": 4,
            "max_length": MAX_LENGTH,
            "lr": 2e-4,
            "precision": "bf16",
            "head_positions": head_positions,
        },
        "validate": {
            "enabled": validate,
            "finetune": {
                "method": "full",
                "epochs": 1.0,
                "batch_size": 4,
                "max_length": MAX_LENGTH,
                "lr": 5e-5,
                "precision": "bf16",
                "head_positions": head_positions,
            },
            "cache_dir": str(RECORDS / "groundtruth"),
            "lr_grid": truth_lrs,
        },
        "run": {"run_dir": str(RUNS / run_name(domain, variant, lane, train_rows)), "threads": threads},
    }
    return SelectConfig.model_validate(_merge(data, VARIANTS[variant]))


def summary_path(domain: str, variant: str, train_rows: int = TRAIN_ROWS) -> Path:
    folder = RECORDS if variant == "base" and train_rows == TRAIN_ROWS else RECORDS / "variants"
    return folder / f"{run_name(domain, variant, None, train_rows)}.json"


def merge_summary(cfg, domain: str, variant: str, board, train_rows: int = TRAIN_ROWS):
    """This run's records, plus its side runs' full fine-tunes, plus the committed summary's records for
    the units neither has made.

    A fresh checkout has no ``runs/``: the ground truth comes back from its cache, and the proxy and
    baseline records of earlier runs from the summary (their settings are this config's, but config
    fields added since changed their settings hashes, so the pipeline alone would rerun them)."""
    from damoc.select.records import DataRecord, UnitRecord
    from damoc.select.report import build_leaderboard, write_reports

    base = run_name(domain, "base", None, train_rows)
    extra = lane_records(cfg, board, base if variant != "base" else None)
    path = summary_path(domain, variant, train_rows)
    old = json.loads(path.read_text()) if path.is_file() else None
    have = {(r.candidate, r.method) for r in [*board.records, *extra] if r.status == "ok"}
    kept = [
        UnitRecord.model_validate(r)
        for r in (old["records"] if old else [])
        if (r["candidate"], r["method"]) not in have and r["status"] == "ok"
    ]
    if not kept and not extra:
        return board
    new_proxy = old is None or any(r.method == "proxy" for r in board.records)
    data = board.data if new_proxy else DataRecord.model_validate(old["data"])
    merged = build_leaderboard(cfg, data, [*board.records, *extra, *kept], Path(cfg.run.run_dir))
    write_reports(merged, Path(cfg.run.run_dir))
    return merged


def truth_done(domain: str, train_rows: int = TRAIN_ROWS) -> bool:
    """Whether the base run of ``domain`` at ``train_rows`` has a finished full fine-tune record for every model."""
    found = set()
    for rec in (RUNS / run_name(domain, "base", None, train_rows) / "candidates").glob("*/full*.json"):
        data = json.loads(rec.read_text())
        if data.get("status") == "ok":
            found.add(data["candidate"])
    return len(found) == len(MODELS)


def run_name(domain: str, variant: str, lane: str | None = None, train_rows: int = TRAIN_ROWS) -> str:
    name = domain if train_rows == TRAIN_ROWS else f"{domain}@n{train_rows}"
    name = name if variant == "base" else f"{name}@{variant}"
    return name if lane is None else f"{name}#{lane}"


def lane_records(cfg, board, base_run: str | None = None) -> list:
    """Finished full fine-tune records that side runs (``--lane``) of this run made and ``board`` lacks; with
    ``base_run`` (a variant's base run of the same size) also those of the base run and its side runs, so a
    variant is scored against a truth that was made one model at a time."""
    from damoc.select.records import UnitRecord

    have = {(r.candidate, r.method, r.lr) for r in board.records if r.status == "ok"}
    run = Path(cfg.run.run_dir)
    found = []
    patterns = [f"{run.name}#*"] + ([base_run, f"{base_run}#*"] if base_run else [])
    paths = [p for pat in patterns for p in sorted(run.parent.glob(f"{pat}/candidates/*/full*.json"))]
    for path in paths:
        rec = UnitRecord.model_validate_json(path.read_text())
        if (
            rec.status == "ok"
            and rec.candidate in cfg.candidates
            and (rec.candidate, rec.method, rec.lr) not in have
        ):
            found.append(rec)
            have.add((rec.candidate, rec.method, rec.lr))
    return found


def summary(board) -> dict:
    return {
        "task": board.task,
        "metric": board.metric,
        "settings": board.settings.model_dump(mode="json"),
        "rows": [r.model_dump(mode="json") for r in board.rows],
        "agreement": [a.model_dump(mode="json") for a in board.agreement],
        "cost": None
        if board.cost is None
        else {
            **board.cost.model_dump(mode="json"),
            "wall_ratio": board.cost.wall_ratio,
            "token_ratio": board.cost.token_ratio,
            "cpu_ratio": board.cost.cpu_ratio,
            "train_wall_ratio": board.cost.train_wall_ratio,
            "train_token_ratio": board.cost.train_token_ratio,
        },
        "data": board.data.model_dump(mode="json"),
        "records": [r.model_dump(mode="json", exclude={"per_example", "predictions"}) for r in board.records],
    }


def _fmt(x, digits=3):
    return "—" if x is None else (("hit" if x else "miss") if isinstance(x, bool) else f"{x:.{digits}f}")


def _proxy_agreement(summary: dict) -> dict | None:
    """The proxy's agreement record in a saved summary (None when it has no ground truth)."""
    return next((a for a in summary["agreement"] if a["method"] == "proxy"), None)


def _proxy_cell(a: dict | None) -> str:
    """Kendall τ / top-1 of an agreement record, for a table cell."""
    return "—" if a is None else f"{_fmt(a['kendall'], 2)} / {_fmt(a['top1_hit'])}"


def figures_markdown(domains: list[str]) -> str:
    """A Markdown section per domain from the saved summaries (true/proxy/baseline rankings, metrics, cost)."""
    out = []
    for domain in domains:
        path = RECORDS / f"{domain}.json"
        if not path.is_file():
            continue
        s = json.loads(path.read_text())
        rows = s["rows"]
        out.append(f"### {domain}\n")
        grid = s["settings"].get("truth_lr_grid")
        by_lr = {
            (r["candidate"], r.get("lr")): r["score"]
            for r in s["records"]
            if r["method"] == "full" and r["status"] == "ok"
        }
        lr_cols = [f"full FT lr {lr:g}" for lr in grid] if grid else []
        out.append(
            "| candidate | proxy | zero-shot | few-shot | "
            + "".join(f"{c} | " for c in lr_cols)
            + "full FT (truth) | proxy wall s |"
        )
        out.append("|---" * (6 + len(lr_cols)) + "|")
        for r in rows:
            sc = r["scores"]
            per_lr = "".join(f"{_fmt(by_lr.get((r['candidate'], lr)), 4)} | " for lr in grid or [])
            out.append(
                f"| {r['candidate']} | {_fmt(sc.get('proxy'), 4)} | {_fmt(sc.get('zero_shot'), 4)} | "
                f"{_fmt(sc.get('few_shot'), 4)} | {per_lr}{_fmt(sc.get('full'), 4)} | "
                f"{_fmt(r.get('proxy_wall_s'), 0)} |"
            )
        truth = sorted(
            [r for r in rows if r["scores"].get("full") is not None], key=lambda r: r["scores"]["full"]
        )
        if s["agreement"]:
            out.append("")
            out.append(
                "| ranking by | order (best first) | Spearman ρ | Kendall τ | top-1 | regret (bpb) | pairwise |"
            )
            out.append("|---|---|---|---|---|---|---|")
            out.append(f"| full FT (truth) | {' > '.join(r['candidate'] for r in truth)} | | | | | |")
            for a in s["agreement"]:
                out.append(
                    f"| {a['method']} | {' > '.join(a['ranking'])} | {_fmt(a['spearman'])} | {_fmt(a['kendall'])} | "
                    f"{_fmt(a['top1_hit'])} | {_fmt(a['top1_regret'], 4)} | {_fmt(a['pairwise_acc'])} |"
                )
        c = s.get("cost")
        if c:
            out.append("")
            out.append(
                f"Cost, full sweep ÷ proxy sweep: wall {c['wall_ratio']:.1f}x ({c['full_wall_s']:.0f} s ÷ "
                f"{c['proxy_wall_s']:.0f} s), tokens {c['token_ratio']:.1f}x; training side only: wall "
                f"{c['train_wall_ratio']:.1f}x, tokens {c['train_token_ratio']:.1f}x."
            )
        out.append("")
    out.append(projection_section(domains))
    out.append(seed_section(domains))
    out.append(check_section(domains))
    return "\n".join(out)


def check_section(domains: list[str]) -> str:
    """The compression check (damoc.select.checks, default slack 0) on every saved summary with a ground
    truth: how often the proxy found the true winner when some candidate failed the check and when none did.

    Variants run without baselines; their candidates' zero-shot scores come from the domain's base run
    (the same dev rows: zero-shot scoring does not depend on the training rows)."""
    from damoc.select.checks import compression_check

    groups: dict[bool, list[tuple[str, bool, float]]] = {True: [], False: []}
    lines = []
    for domain in domains:
        base_path = RECORDS / f"{domain}.json"
        if not base_path.is_file():
            continue
        base = json.loads(base_path.read_text())
        zero = {r["candidate"]: r["scores"].get("zero_shot") for r in base["rows"]}
        for path in [base_path, *sorted((RECORDS / "variants").glob(f"{domain}@*.json"))]:
            summ = json.loads(path.read_text())
            a = _proxy_agreement(summ)
            proxy = {r["candidate"]: r["scores"].get("proxy") for r in summ["rows"]}
            if a is None or None in proxy.values():
                continue
            flagged = compression_check(proxy, zero, higher_is_better=False)
            worst = max(p / zero[c] for c, p in proxy.items())
            groups[bool(flagged)].append((path.stem, bool(a["top1_hit"]), a["kendall"]))
            lines.append(
                f"| {path.stem} | {', '.join(sorted(flagged)) or '—'} | {worst:.2f} | {_proxy_cell(a)} |"
            )
    if not lines:
        return ""

    def rate(runs: list[tuple[str, bool, float]]) -> str:
        hits = sum(h for _, h, _ in runs)
        exact = sum(t == 1.0 for _, _, t in runs)
        return f"top-1 {hits} / {len(runs)}, τ = 1 in {exact} / {len(runs)}"

    return "\n".join(
        [
            "### Compression check: a candidate the proxy left worse than its uncompressed zero-shot score",
            "",
            f"- runs where some candidate failed the check: {rate(groups[True])}",
            f"- runs where every candidate passed: {rate(groups[False])}",
            "",
            "| run | failed the check | worst proxy ÷ zero-shot | proxy τ / top-1 |",
            "|---|---|---|---|",
            *lines,
            "",
        ]
    )


# variants whose proxy sweeps were re-run in the same conditions as the base run (threads fix, same load):
# only their cost figures are comparable enough to project
PROJECTED = ["base", "lf0_ep3", "nocomp", "lf0_ep3_nocomp"]
PROJECTION_ROWS = [800, 5000]


def projection_section(domains: list[str]) -> str:
    """The cost projection (damoc.select.projection) applied to each domain's comparable summaries."""
    from damoc.select.projection import projection_markdown

    found = []
    for domain in domains:
        for variant in PROJECTED:
            path = summary_path(domain, variant)
            if not path.is_file():
                continue
            s = json.loads(path.read_text())
            if s.get("cost") is None:
                continue
            found.append((domain, variant, s))
    if not found:
        return ""
    table = projection_markdown(found, PROJECTION_ROWS) + scale_check(domains)
    return (
        "### Cost ratio against the size of the training data (projected from the measured parts)\n\n"
        + table
        + "\n"
    )


# settings run at a larger --train-rows, with the 120-row run each is projected from; a fixed 12-row budget
# is the 120-row runs' 10%, so at 120 rows it is the same run, projected with the proxy side held fixed
SCALE_RUNS = {
    "base": ("base", False),
    "lf0_ep3": ("lf0_ep3", False),
    "rows12": ("base", True),
    "rows12_lf0_ep3": ("lf0_ep3", True),
    "rows12_lf0_ep3_bf16": ("lf0_ep3", True),  # projected from the fp32-scored 120-row run
}


def _head(summary: dict) -> str:
    """The output-head positions a summary's fine-tunes ran with (runs before the setting existed: every position)."""
    return summary["settings"]["proxy_finetune"].get("head_positions", "all")


def scale_check(domains: list[str]) -> str:
    """Runs at a larger training size (``--train-rows``): the measured ratio next to the 120-row projection."""
    from damoc.select.projection import projected_ratio

    lines = []
    for domain in domains:
        runs = []  # (training rows, name, path, match): a plain sort by name puts n1200 before n240
        for path in (RECORDS / "variants").glob(f"{domain}@n*.json"):
            m = re.fullmatch(rf"{domain}@n(\d+)(?:@(\w+))?", path.stem)
            if m is not None:
                runs.append((int(m.group(1)), path.stem, path, m))
        for _, _, path, m in sorted(runs, key=lambda r: r[:2]):
            if (m.group(2) or "base") not in SCALE_RUNS:
                continue
            variant = m.group(2) or "base"
            small_variant, fixed = SCALE_RUNS[variant]
            small_path = summary_path(domain, small_variant)
            big = json.loads(path.read_text())
            if big.get("cost") is None or not small_path.is_file():
                continue
            small = json.loads(small_path.read_text())
            n = big["data"]["n_train"]
            c = big["cost"]
            head, small_head = _head(big), _head(small)
            lines.append(
                f"| {domain} | {variant} | {n} | {head} | {c['full_wall_s']:,.0f} s ÷ "
                f"{c['proxy_wall_s']:,.0f} s = {c['wall_ratio']:.1f}x | {projected_ratio(small, n, fixed):.1f}x"
                f"{'' if head == small_head else f' ({small_head})'} | "
                + f"{_proxy_cell(_proxy_agreement(big))} |"
            )
    if not lines:
        return ""
    head = [
        "",
        "",
        "Measured at a larger size (`--train-rows`), against the projection from the 120-row run of the same "
        "setting (rows12: a fixed 12-row proxy subset, projected with the proxy side held fixed; head: the "
        "fine-tunes' output-head positions, both sweeps; a projection made from runs with the other head names it):",
        "",
        "| domain | proxy | training rows | head | measured full ÷ proxy sweep (wall) | projected from 120 rows | "
        "proxy τ / top-1 |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + lines)


# proxy settings run with other seeds (another proxy subset, LoRA init and data order)
SEEDED = {"base": ["base", "base_s1", "base_s2"], "lf0_ep3": ["lf0_ep3", "lf0_ep3_s1", "lf0_ep3_s2"]}
# seeded settings run at a larger --train-rows, with the size each domain ran at (the largest its data allows
# for PubMedQA and finance)
SEEDED_AT_SIZE = {
    "rows12_lf0_ep3_bf16": {"pubmedqa": 940, "finance": 1200, "squad": 960},
    "rows48_lf0_ep3": {"wikidata": 1200},
}


def _seed_line(label: str, seed: int, paths: dict[str, Path | None], with_ratio: bool) -> str | None:
    """One row of the seed table: τ / top-1 per domain from the summaries at ``paths`` (None: not run)."""
    cells, hits, ran = [], 0, 0
    for path in paths.values():
        s = json.loads(path.read_text()) if path is not None and path.is_file() else {"agreement": []}
        a = _proxy_agreement(s)
        cost = s.get("cost")
        ratio = f" ({cost['full_wall_s'] / cost['proxy_wall_s']:.1f}x)" if with_ratio and a and cost else ""
        cells.append(_proxy_cell(a) + ratio)
        hits += bool(a and a["top1_hit"])
        ran += a is not None
    return f"| {label} | {seed} | " + " | ".join(cells) + f" | {hits} / {ran} |" if ran else None


def seed_section(domains: list[str]) -> str:
    """Kendall τ / top-1 of each seeded proxy setting per domain, one row per seed."""
    lines = []
    for setting, variants in SEEDED.items():
        for seed, variant in enumerate(variants):
            lines.append(_seed_line(setting, seed, {d: summary_path(d, variant) for d in domains}, False))
    for setting, sizes in SEEDED_AT_SIZE.items():
        at = ", ".join(f"{d} {n}" for d, n in sizes.items())
        for seed in range(3):
            variant = setting if seed == 0 else f"{setting}_s{seed}"
            paths = {d: summary_path(d, variant, sizes[d]) if d in sizes else None for d in domains}
            lines.append(_seed_line(f"{setting} ({at} rows)", seed, paths, True))
    lines = [line for line in lines if line]
    if not lines:
        return ""
    head = [
        "### Proxy rankings under other seeds (Kendall τ / top-1 against the same truth; at 120 training rows "
        "unless the row says otherwise, with the wall-time ratio full ÷ proxy there)",
        "",
        "| proxy | seed | " + " | ".join(domains) + " | top-1 hits |",
        "|---" * (3 + len(domains)) + "|",
    ]
    return "\n".join(head + lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--validate", action="store_true", help="include the full fine-tune ground truth")
    ap.add_argument("--stage", choices=["all", "groundtruth", "baselines", "proxy", "edge"], default="all")
    ap.add_argument("--domains", nargs="+", default=DOMAINS, choices=DOMAINS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--truth-lrs",
        type=float,
        nargs="+",
        default=None,
        help="learning-rate grid of the ground truth: each model is fully fine-tuned once per rate and keeps its "
        "best dev score (validate.lr_grid); the default is the single rate of runs 1-3 (5e-5)",
    )
    ap.add_argument("--figures", action="store_true", help="only print the figures from the saved summaries")
    ap.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=None,
        help="only these candidates (with --lane: a side run whose records go to the shared ground-truth cache)",
    )
    ap.add_argument(
        "--train-rows",
        type=int,
        default=TRAIN_ROWS,
        help=f"training rows of the bounded task (default {TRAIN_ROWS}; the dev rows stay the same); another size "
        "runs as <domain>@n<rows> with its summary under variants/",
    )
    ap.add_argument(
        "--lane",
        default=None,
        help="run in its own directory runs/selection/<domain>#<lane> and write no summary: two lanes can make "
        "ground-truth records side by side (a later run without --lane takes them from the cache)",
    )
    ap.add_argument(
        "--head-positions",
        choices=["all", "answer"],
        default=HEAD_POSITIONS,
        help="output-head positions of both sweeps' fine-tunes (FinetuneConfig.head_positions); the default 'all' "
        "keeps times comparable with the committed ground truth; 'answer' is the product default (the ground-truth "
        "cache ignores this speed-only setting, so use it only for a size no 'all' truth exists for)",
    )
    ap.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default="base",
        help="proxy settings variant (sweep); non-base variants run the proxy only, plus ground truth from the cache "
        "with --validate",
    )
    args = ap.parse_args()
    if args.figures:
        text = figures_markdown(args.domains)
        (RECORDS / "figures.md").write_text(text + "\n")
        print(text)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from damoc.logging_utils import setup_logging
    from damoc.select.pipeline import run_select
    from damoc.select.report import render_table

    setup_logging()
    logging.getLogger("damoc").info("selection benchmark: %s, stage %s", args.domains, args.stage)
    if args.stage == "edge":
        edge_checks(args.domains, args.threads)
        return
    methods = {
        "all": None,
        "groundtruth": ["full"],
        "baselines": ["zero_shot", "few_shot"],
        "proxy": ["proxy"],
    }[args.stage]
    validate = args.validate or args.stage == "groundtruth"
    for domain in args.domains:
        if args.variant != "base" and args.stage == "all":
            # the sweep runs the proxy only; the full fine-tunes are copied from the cache once the base run
            # has all of them (never recomputed by a variant); `--stage groundtruth --variant V` re-scores a
            # variant's committed proxy records against the current truth
            methods = ["proxy", "full"] if validate and truth_done(domain, args.train_rows) else ["proxy"]
        cfg = domain_config(
            domain,
            validate,
            args.threads,
            args.variant,
            args.truth_lrs,
            args.models,
            args.lane,
            args.train_rows,
            args.head_positions,
        )
        board = run_select(cfg, resume=True, methods=methods, retry_failed=True)
        if args.lane is not None or args.models is not None:
            print(
                f"\n=== {run_name(domain, args.variant, args.lane, args.train_rows)} (side run, no summary) ==="
            )
            print(render_table(board))
            continue
        board = merge_summary(cfg, domain, args.variant, board, args.train_rows)
        print(f"\n=== {run_name(domain, args.variant, None, args.train_rows)} ===")
        print(render_table(board))
        path = summary_path(domain, args.variant, args.train_rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary(board), indent=2) + "\n")
    if (
        args.variant != "base"
        or args.lane is not None
        or args.models is not None
        or args.train_rows != TRAIN_ROWS
    ):
        return
    text = figures_markdown(DOMAINS)
    (RECORDS / "figures.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
