"""Fine-tune step time with the output head on the answer positions only, against every position.

    python benchmarks/finetune_speed.py [--models ...] [--task pubmedqa] [--steps 3] [--rounds 2] [--threads 1]

A causal LM's output head projects every position onto the whole vocabulary, although the loss of
supervised fine-tuning only reads the answer tokens. `FinetuneConfig.head_positions` ("answer", the
default) runs the head on those positions only (same loss, same gradients: tests/test_likelihood_finetune.py);
"all" is the model's own forward with labels. For each model and method (LoRA, full) this runs
`damoc.train.finetune.finetune` for ``--steps`` steps in each mode, alternating the modes ``--rounds``
times on fresh copies of the model (so drifting load on a shared machine hits both), on the same rows
of a bundled task (prompt + answer, 256 tokens, batch 4, bf16 autocast: the selection benchmark's
settings), and records the seconds per step of each mode and their ratio, plus the two runs' losses.
Records: benchmarks/records/finetune_speed/<task>.json (a run with some ``--models`` replaces their entries
and keeps the others'; each entry has the machine and torch of its own run).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from damoc.io.files import write_json_atomic
from damoc.io.tasks import load_examples
from damoc.model.arch import load_model
from damoc.train.finetune import FinetuneConfig, finetune

RECORDS = Path(__file__).parent / "records" / "finetune_speed"
MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]
LR = {"lora": 2e-4, "full": 1e-5}


def time_mode(base, tok, pairs, method: str, where: str, steps: int) -> tuple[float, list[float]]:
    """Seconds per step and the step losses of ``steps`` steps of ``finetune`` on a fresh copy of ``base``."""
    cfg = FinetuneConfig(
        method=method,
        max_steps=steps,
        epochs=100.0,
        batch_size=4,
        max_length=256,
        lr=LR[method],
        precision="bf16",
        head_positions=where,
    )
    res = finetune(copy.deepcopy(base), tok, pairs, cfg, desc=f"{method} {where}")
    return res.wall_s / res.steps, res.losses


def measure(name: str, pairs, steps: int, rounds: int) -> dict:
    base, tok = load_model(name)
    out = {"model": name, "vocab": int(base.config.get_text_config().vocab_size), "methods": {}}
    for method in ("lora", "full"):
        per = {"all": [], "answer": []}
        losses = {}
        for _ in range(rounds):
            for where in ("all", "answer"):
                s, loss = time_mode(base, tok, pairs, method, where, steps)
                per[where].append(s)
                losses[where] = loss
        med = {k: statistics.median(v) for k, v in per.items()}
        out["methods"][method] = {
            "s_per_step": per,
            "median_s_per_step": med,
            "speedup": med["all"] / med["answer"],
            "losses": losses,
            "max_loss_diff": max(abs(a - b) for a, b in zip(losses["all"], losses["answer"], strict=True)),
        }
        print(
            f"{name:20s} {method:4s}  all {med['all']:.2f} s/step  answer {med['answer']:.2f} s/step  "
            f"x{med['all'] / med['answer']:.2f}  (loss diff {out['methods'][method]['max_loss_diff']:.1e})",
            flush=True,
        )
    del base
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--task", default="pubmedqa", help="a bundled task (pubmedqa, finance)")
    ap.add_argument("--steps", type=int, default=3, help="fine-tune steps per timed run")
    ap.add_argument("--rounds", type=int, default=2, help="timed runs per mode, alternating the modes")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    examples = load_examples(args.task)[: 4 * args.steps]
    pairs = [(e.prompt(), e.answer) for e in examples]
    path = RECORDS / f"{args.task}.json"
    old = json.loads(path.read_text())["models"] if path.is_file() else []
    run = {
        "steps": args.steps,
        "rounds": args.rounds,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    measured = [{**measure(m, pairs, args.steps, args.rounds), **run} for m in args.models]
    keep = [m for m in old if m["model"] not in args.models]  # earlier runs' other models stay in the record
    record = {
        "task": args.task,
        "rows": len(pairs),
        "models": keep + measured,
    }
    RECORDS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
