"""GPU check: the demo and every model command on the zoo models on one CUDA GPU, with times and peak memory.

    python benchmarks/gpu_check.py                 # all steps (under 10 minutes on one recent GPU)
    python benchmarks/gpu_check.py --only demo,quantize
    python benchmarks/gpu_check.py --plan          # print the steps and exit (works without a GPU)

Each step runs the real command in this process (``damoc.cli.main``) with ``--device cuda``; the demo's
candidates run in their own worker processes, whose records carry their GPU peaks. The record goes to
``benchmarks/records/gpu_check/<gpu>-<date>.json``: per step the command, exit code, wall seconds, peak
GPU memory (MiB, ``torch.cuda.max_memory_allocated``) and the first error line; for the demo also the
leaderboard order and each unit's peak. Without a CUDA device it stops at once with exit code 2.

What the GPU machine needs (it reaches no package registry, so bring everything):
- a Python 3.10+ environment with a CUDA build of ``torch==2.13.0`` and damoc's dependencies: build it
  where a registry is reachable (``python -m venv .venv && .venv/bin/pip install torch==2.13.0
  --index-url https://download.pytorch.org/whl/cu126 && .venv/bin/pip install -e ".[embed,fidelity,
  datasets]"``), or bring a wheelhouse (``pip download`` of the same into ``wheels/``, then
  ``pip install --no-index --find-links wheels ...`` there). The CPU ``.venv`` of ``scripts/setup.sh``
  does not drive a GPU.
- the zoo cache with the three models the check uses, copied to ``~/.cache/damoc/zoo/`` on the GPU
  machine (or anywhere, with ``DAMOC_CACHE`` pointing at its parent): ``smollm2-135m`` (0.5 GB),
  ``gemma3-270m`` (1.1 GB), ``qwen2.5-coder-0.5b`` (2.4 GB). They convert from PyPI packages, so they
  cannot be fetched there.
- this repository (the bundled tasks and general text ship inside ``src/damoc/resources``).
Nothing else is downloaded: ``HF_HUB_OFFLINE=1`` is set for the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records" / "gpu_check"
RUNS = ROOT / "runs" / "gpu_check"
ZOO = ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b")
FINESCOPE_DATA = ROOT / "benchmarks" / "records" / "finescope" / "data"


@dataclass
class Step:
    name: str
    argv: list[str]


@dataclass
class StepResult:
    name: str
    argv: list[str]
    exit_code: int
    wall_s: float
    peak_gpu_mb: float | None
    error: str | None = None
    details: dict = field(default_factory=dict)


def plan(runs: Path = RUNS, device: str = "cuda") -> list[Step]:
    """The steps, in order: the demo, then each command on a zoo model (bounded to seconds or minutes)."""
    out = lambda name: str(runs / name)  # noqa: E731
    dev = ["--device", device]
    return [
        Step("demo", ["select", str(ROOT / "examples/select_demo.yaml"), "--run-dir", out("demo"), "--overwrite", *dev]),
        Step("layers_score", ["layers", "score", "smollm2-135m", "--data", "pubmedqa", "--samples", "32", *dev]),
        Step("prune_layers", ["prune", "layers", "smollm2-135m", "--data", "pubmedqa", "--fraction", "0.25",
                              "--merge", "linear", "--samples", "32", "--out", out("prune_layers"), "--overwrite", *dev]),
        Step("prune_layers_bf16", ["prune", "layers", "gemma3-270m", "--data", "pubmedqa", "--remove", "4",
                                   "--merge", "none", "--samples", "16", "--dtype", "bfloat16",
                                   "--out", out("prune_layers_bf16"), "--overwrite", *dev]),
        Step("prune_calibrated", ["prune", "calibrated", "qwen2.5-coder-0.5b", "--method", "sparsegpt",
                                  "--pattern", "2:4", "--domain", "pubmedqa", "--samples", "32",
                                  "--out", out("prune_calibrated"), "--overwrite", *dev]),
        Step("quantize", ["quantize", "qwen2.5-coder-0.5b", "--method", "gptq", "--bits", "4", "--domain", "pubmedqa",
                          "--samples", "32", "--out", out("quantize"), "--overwrite", *dev]),
        Step("eval", ["eval", "gemma3-270m", "--domain", "pubmedqa", "--samples", "16", "--task-samples", "64", *dev]),
        Step("filter", ["filter", "pubmedqa", "--method", "ifd", "--budget", "0.1", "--max-rows", "200",
                        "--out", out("filter/subset.jsonl"), "--overwrite", *dev]),
        Step("compress", ["compress", "pubmedqa", "--rate", "0.5", "--limit", "32", "--batch-size", "8",
                          "--out", out("compress/out.jsonl"), "--overwrite", *dev]),
        Step("rewrite", ["rewrite", out("compress/out.jsonl"), "--original", "pubmedqa", "--rewriter", "smollm2-135m",
                         "--max-rounds", "1", "--max-new-tokens", "96", "--out", out("rewrite/out.jsonl"),
                         "--overwrite", *dev]),
        Step("curate", ["curate", "--pool", str(FINESCOPE_DATA / "pool.jsonl"), "--seeds",
                        str(FINESCOPE_DATA / "seeds.jsonl"), "--model", "smollm2-135m", "--top", "48",
                        "--sae-steps", "200", "--out", out("curate/curated.jsonl"), "--overwrite", *dev]),
        Step("prune_structured", ["prune", "structured", "smollm2-135m", "--ratio", "0.3", "--data", "pubmedqa",
                                  "--samples", "16", "--out", out("prune_structured"), "--overwrite", *dev]),
        Step("distill", ["distill", "--teacher", "smollm2-135m", "--student", out("prune_structured"),
                         "--data", "pubmedqa", "--max-rows", "32", "--max-steps", "8",
                         "--out", out("distill"), "--overwrite", *dev]),
    ]  # fmt: skip


def require_cuda() -> str:
    """The GPU's name; exits with code 2 and one line when no CUDA device is visible."""
    import torch

    if not torch.cuda.is_available():
        sys.stderr.write(
            f"error: gpu_check needs a CUDA device, and none is visible (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'no'}); see the docstring for what the GPU machine needs\n"
        )
        raise SystemExit(2)
    return torch.cuda.get_device_name(0)


def _last_line(text: str) -> str | None:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


def run_step(step: Step, cli: Callable[[list[str]], int] | None = None) -> StepResult:
    """Run one step in this process; time it and read the GPU's peak memory."""
    import contextlib
    import io

    import torch

    if cli is None:
        from damoc.cli import main as cli
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = cli(step.argv)
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    res = StepResult(step.name, step.argv, int(code), round(wall, 2), peak and round(peak, 1))
    if code != 0:
        res.error = _last_line(err.getvalue())
    if step.name == "demo" and code == 0:
        res.details = demo_details(Path(step.argv[step.argv.index("--run-dir") + 1]))
    return res


def demo_details(run_dir: Path) -> dict:
    """The demo's leaderboard order, its wall time per unit and each unit's peak GPU memory."""
    board = json.loads((run_dir / "leaderboard.json").read_text())
    ranked = sorted((r for r in board["rows"] if r.get("rank") is not None), key=lambda r: r["rank"])
    units = [
        {
            "candidate": r["candidate"],
            "method": r["method"],
            "status": r["status"],
            "wall_s": r.get("wall_s"),
            "peak_gpu_mb": r.get("peak_gpu_mb"),
            "device": r.get("device"),
        }
        for r in board["records"]
    ]
    return {
        "order": [r["candidate"] for r in ranked],
        "units": units,
        "precision": board["settings"].get("eval"),
    }


def write_record(results: list[StepResult], gpu: str, out_dir: Path = RECORDS) -> Path:
    import torch

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() else "-" for c in gpu).strip("-").lower() or "gpu"
    record = {
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "created": stamp,
        "total_wall_s": round(sum(r.wall_s for r in results), 1),
        "steps": [asdict(r) for r in results],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{safe}-{stamp}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--only", help="comma-separated step names (default: all)")
    ap.add_argument("--plan", action="store_true", help="print the steps and exit")
    args = ap.parse_args(argv)
    steps = plan()
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {s.name for s in steps})
        if unknown:
            ap.error(f"unknown step(s) {', '.join(unknown)} (steps: {', '.join(s.name for s in steps)})")
        steps = [s for s in steps if s.name in wanted]
    if args.plan:
        for s in steps:
            print(f"{s.name:18s} damoc {' '.join(s.argv)}")
        return 0
    gpu = require_cuda()
    from damoc.zoo.registry import set_hub_offline

    set_hub_offline()
    results = []
    for step in steps:
        res = run_step(step)
        print(
            f"{res.name:18s} exit {res.exit_code}  {res.wall_s:8.1f} s  peak {res.peak_gpu_mb} MiB  {res.error or ''}"
        )
        results.append(res)
    path = write_record(results, gpu)
    print(f"wrote {path}")
    return 0 if all(r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
