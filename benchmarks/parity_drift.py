"""Why real-model parity with llm-compressor is not within 1%: mask drift and our own run-to-run spread.

For one method (general-only calibration, the same packed windows on both sides) it runs
llm-compressor (dumping its masks), then ours under 1 torch thread and under 2 (only the
floating-point summation order differs), and records for each pair the share of differing mask
entries per decoder layer, plus general/domain perplexity and the task score of each checkpoint.
If ours-vs-ours differs as much as ours-vs-reference, the parity gap is numerical drift through the
sequential pipeline, not a different algorithm.

    python benchmarks/parity_drift.py --method sparsegpt --pattern 2:4 --samples 16 \
        --reference .venv-llmc/bin/python
    python benchmarks/parity_drift.py --method gptq --group-size 64 --reference .venv-llmc/bin/python

GPTQ has no masks: its rows carry perplexities only. Record:
benchmarks/records/cross_calibration/<model>-drift/<method>[-<pattern>|-g<group>]-s<samples>.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from cross_calibration import RECORDS, calib_args, damoc, eval_args, run_reference, sh


def layer_mismatch(a: dict, b: dict) -> dict[int, float]:
    """Mean share of differing mask entries per decoder layer (``model.layers.<i>.…`` names)."""
    per: dict[int, list[float]] = defaultdict(list)
    for name, ma in a.items():
        per[int(name.split(".")[2])].append(float((ma != b[name]).float().mean()))
    return {k: sum(v) / len(v) for k, v in sorted(per.items())}


def masks_of(ckpt: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    return {
        n: m.weight == 0
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and "lm_head" not in n
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--domain", default="pubmedqa")
    ap.add_argument("--method", default="sparsegpt", choices=["sparsegpt", "wanda", "gptq"])
    ap.add_argument("--pattern", default=None, help="e.g. 2:4 (pruning); default unstructured 50%%")
    ap.add_argument("--group-size", type=int, default=64, help="GPTQ columns per scale")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--eval-samples", type=int, default=8)
    ap.add_argument("--task-samples", type=int, default=24)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--reference", required=True, help="python of a venv with llmcompressor")
    a = ap.parse_args()

    quant = a.method == "gptq"
    tag = f"-g{a.group_size}" if quant else (f"-{a.pattern.replace(':', 'of')}" if a.pattern else "")
    name = f"{a.method}{tag}-s{a.samples}"
    rec_dir = RECORDS / f"{a.model}-drift"
    rec_dir.mkdir(parents=True, exist_ok=True)
    path, log = rec_dir / f"{name}.json", rec_dir / "run.log"
    if path.exists():
        print(path.read_text())
        return
    import torch

    if quant:
        ours_cmd = ["quantize", "--method", "gptq", "--bits", "4", "--group-size", str(a.group_size)]
        ref_extra = ["--bits", "4", "--group-size", str(a.group_size)]
    else:
        pat = ["--pattern", a.pattern] if a.pattern else []
        ours_cmd, ref_extra = ["prune", "calibrated", "--method", a.method, *pat], list(pat)
    with tempfile.TemporaryDirectory(prefix="damoc-drift-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        masks_path = work / "ref_masks.pt"
        extra = ref_extra if quant else [*ref_extra, "--save-masks", str(masks_path)]
        ref = run_reference(a, a.model, name, a.method, extra, work, work, log)
        runs, masks = {}, {}
        for threads in (1, 2):
            ckpt = work / f"ours_t{threads}"
            env_cmd = ["env", f"OMP_NUM_THREADS={threads}", *damoc(*ours_cmd)]
            sh([*env_cmd, "--alpha", "0.0", a.model, *calib_args(a), "--out", str(ckpt), "--overwrite"], log)
            out = work / f"ours_t{threads}.eval.json"
            sh(["env", "OMP_NUM_THREADS=1", *damoc("eval", str(ckpt), *eval_args(a), "--out", str(out))], log)
            ev = json.loads(out.read_text())
            runs[f"ours_{threads}_threads"] = {k: ev[k] for k in ("general_ppl", "domain_ppl", "task_bpb")}
            if not quant:
                masks[threads] = masks_of(ckpt)
        rec = {
            "model": a.model,
            "method": a.method,
            "pattern": a.pattern,
            "group_size": a.group_size if quant else None,
            "samples": a.samples,
            "length": a.length,
            "reference": {
                "general_ppl": ref["perplexity"]["general"],
                "domain_ppl": ref["perplexity"]["domain"],
            },
            **runs,
        }
        if not quant:
            ref_masks = torch.load(masks_path)
            rec["mask_mismatch_per_layer"] = {
                "ours_1_vs_reference": layer_mismatch(masks[1], ref_masks),
                "ours_1_vs_ours_2": layer_mismatch(masks[1], masks[2]),
                "ours_2_vs_reference": layer_mismatch(masks[2], ref_masks),
            }
    path.write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(rec, indent=2))


if __name__ == "__main__":
    main()
