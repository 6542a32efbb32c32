"""Reference run with llm-compressor (run with the separate venv's python, NOT damoc's).

    .venv-llmc/bin/python benchmarks/llmc_reference.py MODEL_DIR CALIB.pt EVAL.pt OUT.json \
        --method sparsegpt|wanda|gptq [--sparsity 0.5] [--pattern 2:4] [--bits 4 --group-size 128]

CALIB.pt holds a LongTensor (n, length) of calibration windows; EVAL.pt a dict {name: LongTensor} of
evaluation windows. The script compresses with llm-compressor's sequential pipeline (one oneshot call),
measures wall time and peak RSS of this process, and writes perplexity on each eval set (the same
formula as damoc.evaluate.perplexity.sequence_perplexity) to OUT.json. Self-contained: no damoc import.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


@torch.no_grad()
def perplexity(model, seqs: torch.Tensor, batch_size: int = 8) -> float:
    total, count = 0.0, 0
    for b in range(0, seqs.shape[0], batch_size):
        ids = seqs[b : b + batch_size]
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
        total += float(
            F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="sum")
        )
        count += ids[:, 1:].numel()
    return math.exp(total / count)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("eval")
    ap.add_argument("out")
    ap.add_argument("--method", required=True, choices=["sparsegpt", "wanda", "gptq"])
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--pattern", default=None)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--save-masks", default=None, help="also save {linear name: weight == 0} here (.pt)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM

    calib = torch.load(a.calib)
    evals = torch.load(a.eval)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    model.eval()
    ds = Dataset.from_dict({"input_ids": calib.tolist(), "attention_mask": torch.ones_like(calib).tolist()})
    ignore = ["re:.*lm_head"]
    if a.method == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        recipe = SparseGPTModifier(
            sparsity=a.sparsity,
            mask_structure=a.pattern or "0:0",
            targets=["Linear"],
            ignore=ignore,
            block_size=128,
            dampening_frac=0.01,
        )
    elif a.method == "wanda":
        from llmcompressor.modifiers.pruning import WandaPruningModifier

        recipe = WandaPruningModifier(
            sparsity=a.sparsity, mask_structure=a.pattern or "0:0", targets=["Linear"], ignore=ignore
        )
    else:
        from llmcompressor.modifiers.quantization import GPTQModifier

        recipe = GPTQModifier(
            targets="Linear",
            ignore=ignore,
            block_size=128,
            dampening_frac=0.01,
            actorder=None,
            config_groups={
                "group_0": {
                    "targets": ["Linear"],
                    "weights": {
                        "num_bits": a.bits,
                        "type": "int",
                        "symmetric": False,
                        "strategy": "group",
                        "group_size": a.group_size,
                        "observer": "minmax",
                    },
                }
            },
        )
    t0 = time.perf_counter()
    oneshot(
        model=model,
        dataset=ds,
        recipe=recipe,
        num_calibration_samples=calib.shape[0],
        max_seq_length=calib.shape[1],
        shuffle_calibration_samples=False,
        pipeline="sequential",
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lin = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n]
    zeros = sum(int((m.weight == 0).sum()) for m in lin) / sum(m.weight.numel() for m in lin)
    out = {
        "method": a.method,
        "wall_s": wall,
        "peak_rss_mb": peak,
        "sparsity": zeros,
        "perplexity": {k: perplexity(model, v) for k, v in evals.items()},
        "llmcompressor": __import__("llmcompressor").__version__,
    }
    if a.save_masks:
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        torch.save({n: m.weight == 0 for n, m in linears if "lm_head" not in n}, a.save_masks)
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
