"""Dev scoring under bf16 autocast (`eval.precision: bf16`) against fp32: time and answer bits/byte.

    python benchmarks/eval_precision.py [--models ...] [--domain squad] [--rounds 2] [--threads 2]

Scores the selection benchmark's 60 dev rows of ``--domain`` (the same split: 180 rows, seed 0) with each
uncompressed zoo model through `damoc.evaluate.scoring.score_examples`, in three modes, alternated
``--rounds`` times so drifting load on a shared machine hits all of them: fp32; bf16 (the product's
``precision: "bf16"``); and, as an experiment the product does not ship, bf16 with the output head kept in
fp32 (to see whether the head's rounding is what moves the score). Records the median seconds and the
score of each mode. Records: benchmarks/records/eval_precision/<domain>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from damoc.evaluate.scoring import EvalConfig, score_examples
from damoc.io.files import write_json_atomic
from damoc.io.tasks import FieldMap, load_task
from damoc.model.arch import load_model

sys.path.insert(0, str(Path(__file__).parent))
from selection import DEV_ROWS, MAX_LENGTH, MODELS, TRAIN_ROWS, task_settings  # noqa: E402

RECORDS = Path(__file__).parent / "records" / "eval_precision"


@contextmanager
def fp32_head(model):
    """The output head outside autocast, in fp32 (an experiment; not a product setting)."""
    head = model.get_output_embeddings()

    def forward(x):
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), head.weight.float(), None if head.bias is None else head.bias.float())

    head.forward = forward
    try:
        yield
    finally:
        del head.forward


def score(model, tok, dev, mode: str) -> tuple[float, float]:
    cfg = EvalConfig(
        metric="answer_bpb",
        max_length=MAX_LENGTH,
        batch_size=8,
        precision="fp32" if mode == "fp32" else "bf16",
    )
    if mode == "bf16_fp32_head":
        with fp32_head(model):
            s = score_examples(model, tok, dev, cfg)
    else:
        s = score_examples(model, tok, dev, cfg)
    return s.wall_s, s.value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--domain", default="squad")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = task_settings(args.domain)
    fields = FieldMap(**settings["fields"]) if "fields" in settings else None
    task = load_task(settings["path"], fields, dev_size=DEV_ROWS, seed=0, max_rows=TRAIN_ROWS + DEV_ROWS)
    modes = ["fp32", "bf16", "bf16_fp32_head"]
    path = RECORDS / f"{args.domain}.json"
    out = json.loads(path.read_text()) if path.is_file() else {}
    for name in args.models:
        model, tok = load_model(name)
        times: dict[str, list[float]] = {m: [] for m in modes}
        scores: dict[str, float] = {}
        for _ in range(args.rounds):
            for m in modes:
                t, v = score(model, tok, task.dev, m)
                times[m].append(t)
                scores[m] = v
        entry = {
            m: {"wall_s": statistics.median(times[m]), "answer_bpb": scores[m], "runs": times[m]}
            for m in modes
        }
        entry["bf16_time_ratio"] = entry["bf16"]["wall_s"] / entry["fp32"]["wall_s"]
        entry["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
        entry["torch"] = torch.__version__
        entry["threads"] = args.threads
        entry["dev_rows"] = len(task.dev)
        out[name] = entry
        print(
            f"{name}: "
            + ", ".join(f"{m} {entry[m]['answer_bpb']:.4f} ({entry[m]['wall_s']:.1f} s)" for m in modes),
            flush=True,
        )
        del model
    RECORDS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, out)


if __name__ == "__main__":
    main()
