"""The README's first command (`damoc select examples/select_demo.yaml`) with and without native bf16, and the
same job under another prompt format.

    python benchmarks/demo_precision.py --mode native      # precision auto as this CPU resolves it
    python benchmarks/demo_precision.py --mode no-bf16     # the CPU's flags without avx512_bf16/amx_bf16
    python benchmarks/demo_precision.py --mode chat        # native, eval.prompt_format auto (chat templates)
    python benchmarks/demo_precision.py --mode no-bf16 --reuse-data native   # its data stages from native
    python benchmarks/demo_precision.py --table            # the results table from the records
    python benchmarks/demo_precision.py --page             # benchmarks/results/demo_precision.md

Each mode runs the command as a user does (one subprocess, its workers below it) into
``runs/demo_precision/<mode>/`` and records wall time, the CPU seconds of the whole process tree, the load
average around the run, the precision it resolved to, the leaderboard order and every unit's score and
time into ``benchmarks/records/demo_precision/<mode>.json``. ``no-bf16`` sets ``DAMOC_CPU_FLAGS`` to this
CPU's flags minus the bf16 ones, so ``precision: auto`` takes the fp32 path a CPU without AVX512-BF16
takes (this CPU keeps its AVX-512 fp32 speed: a CPU without AVX-512 is slower in fp32 too). ``chat`` is
the demo with ``eval.prompt_format: auto``: the instruct models (SmolLM2, Qwen2.5-Coder) get their chat
template, the base model (Gemma-3, no template) keeps raw text. The models must be in the zoo cache first.

The data stages (filter, token compression with its fidelity check) do not depend on the precision or
the prompt format (the compressor scores in fp32, without autocast). ``--reuse-data MODE`` copies that
mode's ``data/`` into the new run and resumes it, so only the candidates' work runs again; the record then
adds the data stages' wall and CPU time as measured in that mode's run, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records" / "demo_precision"
RUNS = ROOT / "runs" / "demo_precision"
MODES = ("native", "no-bf16", "chat")
AUTOCAST_ROWS = 8  # dev rows scored per precision in --autocast (enough for a time ratio)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def flags_without_bf16() -> str:
    from damoc.hardware import cpu_flags

    return " ".join(sorted(f for f in cpu_flags() if f not in BF16_FLAGS)) or "none"


def chat_job() -> Path:
    """The demo with ``eval.prompt_format: auto``; Gemma-3 (no chat template: auto is raw for it) is named
    raw, so its units are the native run's own and a reused run takes them over."""
    import yaml

    job = yaml.safe_load((ROOT / "examples" / "select_demo.yaml").read_text())
    job["eval"]["prompt_format"] = "auto"
    job["eval"]["prompt_formats"] = {"gemma3-270m": "raw"}
    path = RUNS / "chat.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def command(mode: str, reuse: bool = False) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "DAMOC_CPU_FLAGS"}
    job = str(chat_job()) if mode == "chat" else "examples/select_demo.yaml"
    argv = [sys.executable, "-m", "damoc", "select", job]
    argv += ["--run-dir", str(RUNS / mode), "--resume" if reuse else "--overwrite"]
    if mode == "no-bf16":
        env["DAMOC_CPU_FLAGS"] = flags_without_bf16()
    return argv, env


def reuse_data(mode: str, source: str) -> dict:
    """Copy ``source``'s data stages into a fresh run directory of ``mode``; their measured cost."""
    import shutil

    src = RUNS / source / "data"
    data = json.loads((src / "data.json").read_text())
    shutil.rmtree(RUNS / mode, ignore_errors=True)
    shutil.copytree(src, RUNS / mode / "data")
    if mode == "chat":  # Gemma-3's units are the same (raw) in both: resumed, not rerun
        for d in (RUNS / source / "candidates").glob("gemma3-270m-*"):
            shutil.copytree(d, RUNS / mode / "candidates" / d.name)
    return {
        "from": source,
        "wall_s": round(sum(data["stage_s"].values()), 1),
        "cpu_s": round(data["cpu_s"], 1),
    }


def run(mode: str, reuse_from: str | None = None) -> dict:
    from damoc.hardware import cpu_bf16_native

    reused = reuse_data(mode, reuse_from) if reuse_from else None
    argv, env = command(mode, reused is not None)
    load_before = os.getloadavg()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    board = json.loads((RUNS / mode / "leaderboard.json").read_text())
    data = json.loads((RUNS / mode / "data" / "data.json").read_text())
    ranked = sorted((r for r in board["rows"] if r.get("rank") is not None), key=lambda r: r["rank"])
    return {
        "mode": mode,
        "command": " ".join(argv[2:]),
        "cpu_flags_override": env.get("DAMOC_CPU_FLAGS"),
        "bf16_native_as_seen": cpu_bf16_native() if mode != "no-bf16" else False,
        "precision": {
            "eval": board["settings"]["eval"]["precision"],
            "proxy": board["settings"]["proxy_finetune"]["precision"],
        },
        "prompt_format": board["settings"]["eval"].get("prompt_format", "raw"),
        "wall_s": round(wall, 1),
        "cpu_s": round((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 1),
        # the data stages: run here, or (reused_data) copied from another mode's run and timed there
        "data_stage": {"wall_s": round(sum(data["stage_s"].values()), 1), "cpu_s": round(data["cpu_s"], 1)},
        "reused_data": reused,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "order": [r["candidate"] for r in ranked],
        # the leaderboard's adjacent pairs with their paired intervals (a pair crossing zero is a tie)
        "pairs": board.get("pairs", []),
        "scores": {r["candidate"]: r["scores"] for r in board["rows"]},
        "units": [
            {
                "candidate": r["candidate"],
                "method": r["method"],
                "score": r.get("score"),
                "wall_s": r.get("wall_s"),
                "stage_s": r.get("stage_s"),
                "peak_rss_mb": r.get("peak_rss_mb"),
            }
            for r in board["records"]
        ],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def autocast_check(model_name: str = "smollm2-135m", rounds: int = 2) -> dict:
    """What ``precision: auto`` avoids on a CPU without native bf16: the demo's dev scoring of one model in
    fp32 and under bf16 autocast, alternated ``rounds`` times in this process (same load for both)."""
    import statistics

    import torch

    from damoc.config import load_job
    from damoc.evaluate.scoring import score_examples
    from damoc.hardware import cpu_bf16_native, resolve_precision
    from damoc.io.tasks import load_task
    from damoc.model.arch import load_model

    job = load_job(ROOT / "examples" / "select_demo.yaml")
    torch.set_num_threads(job.run.threads or torch.get_num_threads())
    t = job.task
    dev = load_task(t.path, t.fields, t.dev_size, t.seed, t.max_rows).dev[:AUTOCAST_ROWS]
    model, tok = load_model(model_name, device="cpu")
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    scores: dict[str, float] = {}
    for _ in range(rounds):
        for p in times:
            cfg = job.eval.model_copy(update={"precision": p})
            res = score_examples(model, tok, dev, cfg)
            times[p].append(res.wall_s)
            scores[p] = res.value
    med = {p: statistics.median(v) for p, v in times.items()}
    return {
        "model": model_name,
        "rows": len(dev),
        "threads": torch.get_num_threads(),
        "cpu_bf16_native": cpu_bf16_native(),
        "auto_resolves_to": resolve_precision("auto", "cpu"),
        "seconds": times,
        "median_s": med,
        "bf16_over_fp32": round(med["bf16"] / med["fp32"], 2),
        "score": scores,
        "load": [round(x, 2) for x in os.getloadavg()],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def load_records() -> dict[str, dict]:
    """The committed record of each mode that has one."""
    return {
        m: json.loads((RECORDS / f"{m}.json").read_text()) for m in MODES if (RECORDS / f"{m}.json").exists()
    }


def table(records: dict[str, dict] | None = None) -> str:
    recs = list((records if records is not None else load_records()).values())
    lines = [
        "| mode | precision (proxy / scoring) | prompt | wall | CPU time (all processes) | load avg (1 min, before → after) | leaderboard |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        extra = r.get("reused_data") or {"wall_s": 0.0, "cpu_s": 0.0}
        note = f" (incl. {r['reused_data']['from']}'s data stages)" if r.get("reused_data") else ""
        wall = f"{(r['wall_s'] + extra['wall_s']) / 60:.1f} min{note}"
        cpu = f"{(r['cpu_s'] + extra['cpu_s']) / 60:.1f} min"
        load = f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}"
        prec = f"{r['precision']['proxy']} / {r['precision']['eval']}"
        lines.append(
            f"| {r['mode']} | {prec} | {r['prompt_format']} | {wall} | {cpu} | {load} | {' > '.join(r['order'])} |"
        )
    lines += ["", "| mode | candidate | proxy | zero-shot | few-shot |", "|---|---|---|---|---|"]
    for r in recs:
        for cand, s in r["scores"].items():
            cells = [
                f"{s.get(k):.4f}" if s.get(k) is not None else "–" for k in ("proxy", "zero_shot", "few_shot")
            ]
            lines.append(f"| {r['mode']} | {cand} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


PAGE = ROOT / "benchmarks" / "results" / "demo_precision.md"


def tie_text(*recs: dict) -> str:
    """Which runs' proxy leaderboards cannot separate any adjacent pair (from the records' intervals)."""
    tied = [
        r["mode"]
        for r in recs
        if r.get("pairs")
        and all(p["ci_low"] <= 0 <= p["ci_high"] for p in r["pairs"] if p["method"] == "proxy")
    ]
    if not tied:
        return ""
    return f" The proxy's adjacent pairs are all tied within noise in the {' and '.join(tied)} run(s)."


def render_page() -> str:
    """The results page from the committed records alone (no run)."""
    recs = load_records()
    lines = ["# The README's demo on a CPU without native bf16, and the chat prompt format", ""]
    native = recs.get("native")
    if native:
        extra = native.get("reused_data") or {"wall_s": 0.0}
        minutes = (native["wall_s"] + extra.get("wall_s", 0.0)) / 60
        lines += [
            f"**Current answer.** `damoc select examples/select_demo.yaml` (three zoo models, the 3-epoch LoRA "
            f"proxy on 12 compressed rows plus zero- and 1-shot baselines) ran in {minutes:.1f} min of wall time "
            f"on this project's 2-core CPU, which has no AVX-512 at all: `precision: auto` resolved to "
            f"{native['precision']['proxy']} (proxy) / {native['precision']['eval']} (scoring), the path every "
            f"CPU without AVX512-BF16 takes. Leaderboard: {' > '.join(native['order'])}.",
            "",
        ]
    chat = recs.get("chat")
    if native and chat:
        same = chat["order"] == native["order"]
        lines += [
            "With `eval.prompt_format: auto` (the instruct models SmolLM2 and Qwen2.5-Coder get their chat "
            "template; Gemma-3, a base model, keeps raw text) the leaderboard order "
            + ("is the same" if same else f"changes to {' > '.join(chat['order'])}")
            + "; every score is in the second table."
            + tie_text(native, chat),
            "",
        ]
    lines += [
        "```",
        "python benchmarks/demo_precision.py --mode native                     # the demo as this CPU runs it",
        "python benchmarks/demo_precision.py --mode chat --reuse-data native   # the same with chat templates",
        "python benchmarks/demo_precision.py --page                            # this page, from the records",
        "```",
        "",
        table(recs),
        "Reading: wall time is the whole `damoc select` command as a user starts it (data stages, a worker "
        "process per candidate, the report); CPU time sums every process of the run. Scores are answer "
        "bits/byte on the demo's dev rows (lower is better). A chat run reuses the raw run's data stages "
        "(filtering and compression do not depend on the prompt format), and its wall time adds theirs as "
        "measured in that run.",
        "",
        "Limits: one run per mode on one machine (a 2-core AMD EPYC VM with AVX2 only); the load average "
        "around each run is in the table. A CPU with AVX512-BF16 or AMX (where `auto` picks bf16) was not "
        "available, nor a GPU (`benchmarks/gpu_check.py` is ready for one). Records: "
        "`benchmarks/records/demo_precision/<mode>.json`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--mode", choices=MODES)
    ap.add_argument("--reuse-data", choices=MODES, help="take the data stages from this mode's run")
    ap.add_argument("--autocast", action="store_true", help="time fp32 vs bf16 autocast scoring here")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--page", action="store_true", help="write benchmarks/results/demo_precision.md")
    args = ap.parse_args()
    if args.mode:
        rec = run(args.mode, args.reuse_data)
        RECORDS.mkdir(parents=True, exist_ok=True)
        (RECORDS / f"{args.mode}.json").write_text(json.dumps(rec, indent=1) + "\n")
        print(json.dumps({k: rec[k] for k in ("mode", "precision", "wall_s", "cpu_s", "order")}))
    if args.autocast:
        rec = autocast_check()
        RECORDS.mkdir(parents=True, exist_ok=True)
        (RECORDS / "autocast.json").write_text(json.dumps(rec, indent=1) + "\n")
        print(json.dumps(rec))
    if args.table:
        print(table(), end="")
    if args.page:
        PAGE.write_text(render_page(), encoding="utf-8")
        print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
