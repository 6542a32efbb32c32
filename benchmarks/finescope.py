"""FineScope benchmark on a real zoo model (default smollm2-135m), 2-core CPU, bounded sizes.

Pool = PubMedQA (medical) + TAT-QA (finance) + SQuAD v1.1 dev (general, read from the PyPI sdist
``bigbench==1.0.0``; without it the pool is PubMedQA + TAT-QA only); 10 PubMedQA seed rows; held-out
PubMedQA rows for the domain score. Runs the `finescope` recipe (SAE curation -> Taylor structured pruning
-> plain fine-tune vs self-distillation) and records curation precision (SAE vs embeddings vs TF-IDF vs
random), parameter counts, domain scores and wall time of every stage.

    python benchmarks/finescope.py --write-data          # only (re)write the pool/seeds/eval files
    python benchmarks/finescope.py                       # run (~30-60 min on 2 shared cores)
    python benchmarks/finescope.py --curate-method tfidf --variants rewrite_reference,rewrite_reference+kl

The committed data files are used as they are (``--write-data`` rewrites them). Stage outputs are kept
in ``--cache`` (keyed by their settings), so a re-run that only changes the distillation reuses the
curated rows, the pruned checkpoint and any stage already scored. ``--variants`` adds self-distillation
stages: ``answer`` / ``rewrite_reference`` (teacher mode), ``+kl`` adds the KL term (``--kl-weight``), ``+kl=3`` with weight 3.

More eval rows and several fine-tune seeds, then a paired comparison over seeds and rows:

    python benchmarks/finescope.py --write-eval 120      # eval120.jsonl: eval.jsonl + unused PubMedQA rows
    python benchmarks/finescope.py --eval-file eval120.jsonl --eval-rows 120 --ft-seed 1 --record s1.json ...
    python benchmarks/finescope.py --summary s0.json,s1.json,s2.json

Results: benchmarks/records/finescope/<model>.json (the report of the run) and a printed table.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records" / "finescope"
DATA = RECORDS / "data"
SQUAD_MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json"


def find_bigbench(explicit: str | None) -> Path | None:
    cands = [explicit] if explicit else []
    cands += sorted(glob.glob("/tmp/*/bigbench-1.0.0.tar.gz")) + sorted(
        glob.glob(str(Path.home() / "*bigbench-1.0.0.tar.gz"))
    )
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    return None


def squad_rows(sdist: Path, n: int, seed: int) -> list[dict]:
    with tarfile.open(sdist) as tf:
        data = json.load(tf.extractfile(SQUAD_MEMBER))["data"]
    rows = []
    for art in data:
        for para in art["paragraphs"]:
            for qa in para["qas"][:1]:
                rows.append(
                    {
                        "id": f"squad-{qa['id']}",
                        "question": qa["question"],
                        "context": para["context"],
                        "answer": qa["answers"][0]["text"],
                        "domain": "general",
                    }
                )
    random.Random(seed).shuffle(rows)
    return rows[:n]


def write_data(n_per_domain: int, n_eval: int, seed: int, bigbench: str | None) -> dict:
    from damoc.io.tasks import read_rows

    rng = random.Random(seed)
    med = [dict(r, domain="medical") for r in read_rows("pubmedqa")]
    fin = [dict(r, domain="finance") for r in read_rows("finance")]
    rng.shuffle(med)
    rng.shuffle(fin)
    seeds, held, med_pool = med[:10], med[10 : 10 + n_eval], med[10 + n_eval : 10 + n_eval + n_per_domain]
    pool = med_pool + fin[:n_per_domain]
    sdist = find_bigbench(bigbench)
    general = squad_rows(sdist, n_per_domain, seed) if sdist else []
    pool += general
    rng.shuffle(pool)
    DATA.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pool", pool), ("seeds", seeds), ("eval", held)):
        (DATA / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    info = {
        "pool": len(pool),
        "medical": len(med_pool),
        "finance": n_per_domain,
        "general": len(general),
        "seeds": len(seeds),
        "eval": len(held),
        "bigbench_sdist": str(sdist) if sdist else None,
    }
    print("data:", info)
    return info


def write_eval(n: int) -> Path:
    """eval<n>.jsonl: the committed eval rows, then PubMedQA rows in neither the pool nor the seeds."""
    from damoc.io.tasks import read_rows

    used = {json.loads(x)["id"] for name in ("pool", "seeds") for x in open(DATA / f"{name}.jsonl")}
    first = [json.loads(x) for x in open(DATA / "eval.jsonl")]
    have = {r["id"] for r in first}
    rest = [dict(r, domain="medical") for r in read_rows("pubmedqa") if r["id"] not in used | have]
    random.Random(0).shuffle(rest)
    rows = (first + rest)[:n]
    path = DATA / f"eval{n}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{path}: {len(rows)} rows ({len(first)} from eval.jsonl)")
    return path


def summary(records: list[str]) -> str:
    """Self-distillation vs plain fine-tuning over several runs (seeds) on the same eval rows."""
    from damoc.evaluate.paired import paired_bpb_difference

    reps = [json.load(open(RECORDS / r if not Path(r).is_file() else r))["report"] for r in records]
    plain = "pruned + fine-tune"
    lines = [
        "| run | stage | answer bpb | plain FT bpb | difference | 95% paired bootstrap interval |",
        "|---|---|---:|---:|---:|---|",
    ]
    per_stage: dict[str, list] = {}
    for name, rep in zip(records, reps, strict=True):
        stages = {s["stage"]: s["score"] for s in rep["stages"]}
        for stage, d in rep.get("versus_plain", {}).items():
            sc = stages[f"pruned + {stage}"]
            lines.append(
                f"| {Path(name).stem} | {stage} | {sc['answer_bpb']:.4f} | {stages[plain]['answer_bpb']:.4f} "
                f"| {d['diff']:+.4f} | [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] |"
            )
            per_stage.setdefault(stage, []).append((sc, stages[plain]))
    for stage, pairs in per_stage.items():
        n = len(pairs[0][0]["row_bits"])
        mean_a = [sum(a["row_bits"][i] for a, _ in pairs) / len(pairs) for i in range(n)]
        mean_b = [sum(b["row_bits"][i] for _, b in pairs) / len(pairs) for i in range(n)]
        d = paired_bpb_difference(mean_a, mean_b, pairs[0][0]["row_bytes"], n_boot=5000)
        lines.append(
            f"| mean of {len(pairs)} runs | {stage} | {sum(a['answer_bpb'] for a, _ in pairs) / len(pairs):.4f} "
            f"| {sum(b['answer_bpb'] for _, b in pairs) / len(pairs):.4f} | {d.diff:+.4f} "
            f"| [{d.ci_low:+.4f}, {d.ci_high:+.4f}] (better in {100 * d.share_a_better:.0f}% of draws) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--per-domain", type=int, default=200, help="pool rows per domain")
    ap.add_argument("--eval-rows", type=int, default=40)
    ap.add_argument("--top", type=int, default=128, help="M, curated rows")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--sae-steps", type=int, default=300)
    ap.add_argument("--max-new-tokens", type=int, default=64, help="longest teacher answer")
    ap.add_argument(
        "--bigbench", default=None, help="path of bigbench-1.0.0.tar.gz (pip download --no-deps ...)"
    )
    ap.add_argument("--curate-method", default="sae", help="sae (FineScope), embed or tfidf (cheap)")
    ap.add_argument("--compare", default="embed,tfidf,random", help="curation methods to compare against")
    ap.add_argument(
        "--teacher-mode", default="answer", help="the main self-distillation stage's teacher mode"
    )
    ap.add_argument(
        "--variants", default="", help="comma list of extra distillation stages, e.g. rewrite_reference+kl"
    )
    ap.add_argument(
        "--epochs",
        type=float,
        default=1.0,
        help="LoRA epochs of every recovery stage (plain and self-distilled)",
    )
    ap.add_argument("--kl-weight", type=float, default=1.0, help="KL weight of the '+kl' variants")
    ap.add_argument(
        "--main-kl-weight",
        type=float,
        default=0.0,
        help="KL weight of the main self-distillation stage (0 as in runs 1-4; the library default is 1.0)",
    )
    ap.add_argument("--rewrite-max-new-tokens", type=int, default=64, help="longest teacher rewrite")
    ap.add_argument("--cache", default="/tmp/damoc-finescope-cache", help="stage cache ('' = none)")
    ap.add_argument("--record", default=None, help="record file name (default <model>.json)")
    ap.add_argument("--out", default="/tmp/damoc-finescope-bench")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-data", action="store_true", help="only write the data files")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data files (--write-data)")
    ap.add_argument("--ft-seed", type=int, default=0, help="seed of every recovery fine-tune")
    ap.add_argument("--eval-file", default="eval.jsonl", help="eval rows file under records/finescope/data")
    ap.add_argument("--write-eval", type=int, default=0, help="only write eval<N>.jsonl (N rows)")
    ap.add_argument("--summary", default="", help="comma list of records: print the paired comparison")
    args = ap.parse_args(argv)
    if args.summary:
        print(summary([r for r in args.summary.split(",") if r]))
        return 0
    if args.write_eval:
        write_eval(args.write_eval)
        return 0

    have = all((DATA / f"{n}.jsonl").is_file() for n in ("pool", "seeds", "eval"))
    if args.write_data or not have:
        info = write_data(args.per_domain, args.eval_rows, args.seed, args.bigbench)
    else:
        info = {n: sum(1 for _ in open(DATA / f"{n}.jsonl")) for n in ("pool", "seeds", "eval")}
        info["files"] = "committed"
    if args.eval_file != "eval.jsonl" and (DATA / args.eval_file).is_file():
        info["eval_file"] = args.eval_file
        info["eval"] = sum(1 for _ in open(DATA / args.eval_file))
    if args.write_data:
        return 0
    import shutil

    import torch

    from damoc.config import parse_config
    from damoc.curate.config import FinescopeJob
    from damoc.curate.recipe import render_markdown, run_finescope
    from damoc.io.tasks import read_jsonl
    from damoc.logging_utils import setup_logging
    from damoc.train.distill import DistillConfig

    setup_logging()
    torch.set_num_threads(args.threads)
    job = parse_config(
        FinescopeJob,
        {
            "job": "finescope",
            "model": args.model,
            "pool": str(DATA / "pool.jsonl"),
            "seeds": str(DATA / "seeds.jsonl"),
            "eval": str(DATA / args.eval_file),
            "out": args.out,
            "overwrite": True,
            "save_models": False,
            "curate": {
                "method": args.curate_method,
                "top": args.top,
                "compare": [c for c in args.compare.split(",") if c and c != args.curate_method],
                "max_length": 128,
                "sae": {"expansion": 16, "k": 32, "steps": args.sae_steps, "batch_size": 512, "lr": 1e-3},
            },
            "prune": {"ratio": args.ratio, "samples": 32, "max_length": 256},
            "distill": {
                "teacher_mode": args.teacher_mode,
                "kl_weight": args.main_kl_weight,
                "generation": {"max_new_tokens": args.max_new_tokens, "batch_size": 16},
                "rewrite": {"max_new_tokens": args.rewrite_max_new_tokens},
                "finetune": {
                    "method": "lora",
                    "epochs": args.epochs,
                    "batch_size": 4,
                    "max_length": 256,
                    "seed": args.ft_seed,
                    "precision": "fp32",  # as the records were made (the product's default is auto)
                },
            },
            "score": {"eval_rows": args.eval_rows, "max_length": 256, "batch_size": 8},
        },
    )
    variants = {}
    for v in [v.strip() for v in args.variants.split(",") if v.strip()]:
        mode, _, kl = v.partition("+")
        weight = 0.0
        if kl == "kl":
            weight = args.kl_weight
        elif kl.startswith("kl="):
            weight = float(kl[3:])
        elif kl:
            raise SystemExit(f"error: unknown variant suffix '+{kl}' (use +kl or +kl=WEIGHT)")
        update = {"teacher_mode": mode, "kl_weight": weight}
        variants[v] = DistillConfig.model_validate({**job.distill.model_dump(), **update})
    t0 = time.perf_counter()
    report = run_finescope(job, cache_dir=args.cache or None, variants=variants)
    total = time.perf_counter() - t0
    rec = {
        "model": args.model,
        "machine": f"2-core CPU shared with background jobs, fp32, {args.threads} thread(s)",
        "command": " ".join(["python", *sys.argv]),
        "data": info,
        "total_wall_s": total,
        "report": report.to_dict(),
    }
    rec["report"]["curation"].pop("selected_ids", None)
    rec["teacher_answers"] = [  # per row: what the student was trained on, and whether the gold replaced it
        {k: r[k] for k in ("id", "stage", "fallback", "reason", "teacher_output", "answer")}
        for f in sorted(Path(args.out).glob("teacher_answers*.jsonl"))
        for r in read_jsonl(f)
    ]
    RECORDS.mkdir(parents=True, exist_ok=True)
    path = RECORDS / (args.record or f"{args.model}.json")
    path.write_text(json.dumps(rec, indent=2) + "\n")
    print(render_markdown(report))
    print(
        f"wall per stage (s): {json.dumps({k: round(v, 1) for k, v in report.wall_s.items()})}; total {total:.0f}"
    )
    print(f"-> {path}")
    shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
