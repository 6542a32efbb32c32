"""The README's first command (`damoc select examples/select_demo.yaml`) with and without native bf16, and the
same job under another prompt format.

    python benchmarks/demo_precision.py --mode native      # precision auto as this CPU resolves it
    python benchmarks/demo_precision.py --mode no-bf16     # the CPU's flags without avx512_bf16/amx_bf16
    python benchmarks/demo_precision.py --mode chat        # native, eval.prompt_format auto (chat templates)
    python benchmarks/demo_precision.py --table            # the results table from the records

Each mode runs the command as a user does (one subprocess, its workers below it) into
``runs/demo_precision/<mode>/`` and records wall time, the CPU seconds of the whole process tree, the load
average around the run, the precision it resolved to, the leaderboard order and every unit's score and
time into ``benchmarks/records/demo_precision/<mode>.json``. ``no-bf16`` sets ``DAMOC_CPU_FLAGS`` to this
CPU's flags minus the bf16 ones, so ``precision: auto`` takes the fp32 path a CPU without AVX512-BF16
takes (this CPU keeps its AVX-512 fp32 speed: a CPU without AVX-512 is slower in fp32 too). ``chat`` is
the demo with ``--prompt-format auto``: the instruct models (SmolLM2, Qwen2.5-Coder) get their chat
template, the base model (Gemma-3) keeps raw text. The models must be in the zoo cache first.
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
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def flags_without_bf16() -> str:
    from damoc.hardware import cpu_flags

    return " ".join(sorted(f for f in cpu_flags() if f not in BF16_FLAGS)) or "none"


def command(mode: str) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "DAMOC_CPU_FLAGS"}
    argv = [sys.executable, "-m", "damoc", "select", "examples/select_demo.yaml"]
    argv += ["--run-dir", str(RUNS / mode), "--overwrite"]
    if mode == "no-bf16":
        env["DAMOC_CPU_FLAGS"] = flags_without_bf16()
    if mode == "chat":
        argv += ["--prompt-format", "auto"]
    return argv, env


def run(mode: str) -> dict:
    from damoc.hardware import cpu_bf16_native

    argv, env = command(mode)
    load_before = os.getloadavg()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    board = json.loads((RUNS / mode / "leaderboard.json").read_text())
    ranked = sorted((r for r in board["rows"] if r.get("rank") is not None), key=lambda r: r["rank"])
    return {
        "mode": mode,
        "command": " ".join(argv[2:]),
        "cpu_flags_override": env.get("DAMOC_CPU_FLAGS"),
        "bf16_native_as_seen": cpu_bf16_native() if mode != "no-bf16" else False,
        "precision": {
            "eval": board["settings"]["eval"]["precision"],
            "proxy": board["settings"]["proxy"]["precision"],
        },
        "prompt_format": board["settings"]["eval"].get("prompt_format", "raw"),
        "wall_s": round(wall, 1),
        "cpu_s": round((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "order": [r["candidate"] for r in ranked],
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


def table() -> str:
    recs = [
        json.loads((RECORDS / f"{m}.json").read_text()) for m in MODES if (RECORDS / f"{m}.json").exists()
    ]
    lines = [
        "| mode | precision (proxy / scoring) | prompt | wall | CPU time (all processes) | load avg (1 min, before → after) | leaderboard |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        wall = f"{r['wall_s'] / 60:.1f} min"
        cpu = f"{r['cpu_s'] / 60:.1f} min"
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--mode", choices=MODES)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.mode:
        rec = run(args.mode)
        RECORDS.mkdir(parents=True, exist_ok=True)
        (RECORDS / f"{args.mode}.json").write_text(json.dumps(rec, indent=1) + "\n")
        print(json.dumps({k: rec[k] for k in ("mode", "precision", "wall_s", "cpu_s", "order")}))
    if args.table:
        print(table(), end="")


if __name__ == "__main__":
    main()
