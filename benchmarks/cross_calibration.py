"""Cross-calibration benchmark: general-only (α=0), domain-only (α=1) and cross (α=0.5) pruning at the
same sparsity, evaluated on held-out general text, held-out domain text and the domain task; plus a
parity/timing comparison against llm-compressor (separate venv) on general-only calibration.

    python benchmarks/cross_calibration.py --models smollm2-135m [--reference .venv-llmc/bin/python]

Each step runs as its own process through the damoc CLI (so peak memory is per step); every result is
cached as JSON under benchmarks/records/cross_calibration/<model>/ and reused on the next run.
Prints a Markdown table and writes it to benchmarks/records/cross_calibration/<model>/table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records" / "cross_calibration"
ALPHAS = {"general-only": 0.0, "domain-only": 1.0, "cross": 0.5}


def sh(cmd: list[str], log: Path) -> None:
    with log.open("a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        res = subprocess.run(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "DAMOC_NO_PROGRESS": "1"}
        )
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}; see {log}")


def damoc(*args: str) -> list[str]:
    return [sys.executable, "-m", "damoc", *args]


def eval_args(a) -> list[str]:
    return ["--domain", a.domain, "--samples", str(a.eval_samples), "--length", str(a.length),
            "--task-samples", str(a.task_samples), "--max-length", str(a.max_length)]  # fmt: skip


def calib_args(a) -> list[str]:
    return ["--domain", a.domain, "--samples", str(a.samples), "--length", str(a.length)]


def run_ours(a, model: str, name: str, compress: list[str], rec_dir: Path, work: Path, log: Path) -> dict:
    path = rec_dir / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    ckpt = work / name
    if compress:
        sh(damoc(*compress, model, *calib_args(a), "--out", str(ckpt), "--overwrite"), log)
        crec = json.loads((ckpt / "damoc_calibrated.json").read_text())
        errs = [s["rel_error"] for s in crec["layers"] if s["rel_error"] is not None]
        comp = {k: crec[k] for k in ("method", "weights", "tokens", "sparsity", "wall_s", "peak_rss_mb")}
        comp["mean_rel_error"] = sum(errs) / len(errs) if errs else None
        comp["args"] = compress
        target = str(ckpt)
    else:
        comp, target = None, model
    sh(damoc("eval", target, *eval_args(a), "--out", str(work / f"{name}.eval.json")), log)
    out = {
        "name": name,
        "model": model,
        "compression": comp,
        "eval": json.loads((work / f"{name}.eval.json").read_text()),
    }
    path.write_text(json.dumps(out, indent=2) + "\n")
    if ckpt.exists():
        shutil.rmtree(ckpt)
    return out


def run_reference(
    a, model: str, name: str, method: str, extra: list[str], rec_dir: Path, work: Path, log: Path
):
    path = rec_dir / f"ref-{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    import torch

    from damoc.evaluate.perplexity import pack_sequences
    from damoc.model.arch import load_tokenizer, resolve_model
    from damoc.model.calibrated.general_text import load_source_texts

    tok = load_tokenizer(model)
    calib = pack_sequences(tok, load_source_texts("general", "calib"), a.samples, a.length)
    evals = {
        k: pack_sequences(tok, load_source_texts(src, "dev"), a.eval_samples, a.length)
        for k, src in (("general", "general"), ("domain", a.domain))
    }
    torch.save(calib, work / "calib.pt")
    torch.save(evals, work / "eval.pt")
    out_json = work / f"ref-{name}.json"
    script = str(ROOT / "benchmarks" / "llmc_reference.py")
    cmd = [a.reference, script, str(resolve_model(model)), str(work / "calib.pt"), str(work / "eval.pt"),
           str(out_json), "--method", method, *extra]  # fmt: skip
    sh(cmd, log)
    res = json.loads(out_json.read_text())
    path.write_text(json.dumps(res, indent=2) + "\n")
    return res


def table(rows: list[dict], refs: dict[str, dict]) -> str:
    def f(x, nd=3):
        return "–" if x is None else f"{x:.{nd}f}"

    def sp(name, x):  # quantized rows: the bits, not the share of zeros their codes happen to give
        return "4-bit" if name.startswith("gptq") else f(x, 2)

    lines = [
        "| run | sparsity | general ppl | domain ppl | task bits/byte | label acc | compress s | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c, e = r["compression"] or {}, r["eval"]
        lines.append(
            f"| {r['name']} | {sp(r['name'], c.get('sparsity'))} | {f(e['general_ppl'], 2)} | {f(e['domain_ppl'], 2)} | "
            f"{f(e['task_bpb'])} | {f(e['label_accuracy'])} | {f(c.get('wall_s'), 0)} | {f(c.get('peak_rss_mb'), 0)} |"
        )
    if refs:
        lines += ["", "| llm-compressor reference | sparsity | general ppl | domain ppl | compress s | peak MiB |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, r in refs.items():
            p = r["perplexity"]
            lines.append(
                f"| {name} | {sp(name, r['sparsity'])} | {f(p['general'], 2)} | {f(p['domain'], 2)} | "
                f"{f(r['wall_s'], 0)} | {f(r['peak_rss_mb'], 0)} |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- α chosen on validation text


def _sparsity(model) -> float:
    import torch

    from damoc.model.arch import decoder_layers

    zeros = total = 0
    for layer in decoder_layers(model):
        for mod in layer.modules():
            if isinstance(mod, torch.nn.Linear):
                zeros += int((mod.weight == 0).sum())
                total += mod.weight.numel()
    return zeros / max(1, total)


def _eval_cfg(a, domain: str):
    from damoc.evaluate.report_eval import EvalConfig

    return EvalConfig(domain=domain, samples=a.eval_samples, length=a.length, task_samples=a.task_samples,
                      max_length=a.max_length)  # fmt: skip


def alpha_dir(a, model: str) -> Path:
    """Records of one α search: alpha_val/<model>-<domain>[-<tag>]/."""
    return RECORDS / "alpha_val" / (f"{model}-{a.domain}" + (f"-{a.tag}" if a.tag else ""))


def alpha_search_run(a, model: str, method: str, pattern: str) -> dict:
    """Every α of the grid, calibrated with a validation part held out; α chosen on validation perplexity,
    then every α evaluated on the held-out evaluation text (the choice never sees it)."""
    import gc

    import torch

    from damoc.evaluate.perplexity import sequence_perplexity
    from damoc.evaluate.report_eval import evaluate_model
    from damoc.model.calibrated.alpha_search import (
        AlphaPoint,
        AlphaSearchConfig,
        choose_alpha,
        validation_windows,
    )
    from damoc.model.calibrated.config import CalibrationConfig, PruneSpec
    from damoc.model.calibrated.pipeline import compress_model
    from damoc.model.calibrated.run import calibration_sequences, load_model_quietly, mixing_weights

    rec_dir = alpha_dir(a, model)
    rec_dir.mkdir(parents=True, exist_ok=True)
    name = f"{method}-{pattern.replace(':', 'of')}"
    search = AlphaSearchConfig(alphas=a.alphas, val_size=a.val_size, samples=a.val_samples, length=a.length,
                               general_tolerance=a.general_tolerance)  # fmt: skip
    spec = PruneSpec(pattern=None if pattern == "unstructured" else pattern)
    base = CalibrationConfig(domain=a.domain, samples=a.samples, length=a.length, val_size=a.val_size)
    points, evals = [], {}
    windows = None
    dense_path = rec_dir / "dense.json"
    for alpha in search.alphas:
        path = rec_dir / f"{name}-a{alpha:g}.json"
        rec = json.loads(path.read_text()) if path.is_file() else None
        # a record from before the masked LoRA evaluation existed: compress again, redo only the LoRA
        redo_lora = (
            rec is not None and alpha == 0.0 and a.lora_baseline and "masked_eval" not in rec.get("lora", {})
        )
        if rec is None or redo_lora:
            torch.manual_seed(0)
            m, tok = load_model_quietly(model)
            if windows is None:
                windows = validation_windows(tok, base, search)
            if not dense_path.is_file():
                val = {k: sequence_perplexity(m, w, 8).perplexity for k, w in windows.items()}
                ev = evaluate_model(m, tok, _eval_cfg(a, a.domain), model).__dict__
                dense_path.write_text(json.dumps({"val": val, "eval": ev}, indent=2) + "\n")
            cfg = base.model_copy(update={"alpha": alpha})
            t0 = time.perf_counter()
            res = compress_model(
                m, calibration_sequences(tok, cfg), mixing_weights(cfg), method, spec, cfg.batch_size
            )
            wall = time.perf_counter() - t0
            if redo_lora:
                if "lora" in rec:
                    rec["lora_earlier_run"] = rec.pop("lora")
            else:
                val = {k: sequence_perplexity(m, w, 8).perplexity for k, w in windows.items()}
                ev = evaluate_model(m, tok, _eval_cfg(a, a.domain), model).__dict__
                rec = {"alpha": alpha, "method": method, "pattern": pattern, "sparsity": res.sparsity,
                       "compress_s": wall, "val": val, "eval": ev, "calibration": cfg.model_dump()}  # fmt: skip
            if alpha == 0.0 and a.lora_baseline:
                rec["lora"] = lora_baseline(a, m, tok, cfg)
            path.write_text(json.dumps(rec, indent=2) + "\n")
            del m
            gc.collect()
        points.append(AlphaPoint(alpha, rec["val"]["general"], rec["val"]["domain"], rec["compress_s"]))
        evals[alpha] = rec
    choice = choose_alpha(points, search.general_tolerance)
    out = {"model": model, "domain": a.domain, "method": method, "pattern": pattern, "choice": choice.to_dict(),
           "search": search.model_dump(), "dense": json.loads(dense_path.read_text()) if dense_path.is_file() else None,
           "points": {str(k): v for k, v in evals.items()}}  # fmt: skip
    (rec_dir / f"{name}.choice.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _zero_masks(model) -> dict:
    """Where each decoder linear's weight is zero (the pruning mask), to restore it after a LoRA merge."""
    import torch

    from damoc.model.arch import decoder_layers

    return {
        f"{i}.{n}": mod.weight == 0
        for i, layer in enumerate(decoder_layers(model))
        for n, mod in layer.named_modules()
        if isinstance(mod, torch.nn.Linear)
    }


def _apply_masks(model, masks: dict) -> None:
    import torch

    from damoc.model.arch import decoder_layers

    with torch.no_grad():
        for i, layer in enumerate(decoder_layers(model)):
            for n, mod in layer.named_modules():
                if f"{i}.{n}" in masks:
                    mod.weight[masks[f"{i}.{n}"]] = 0.0


def lora_baseline(a, model, tok, calib_cfg) -> dict:
    """The training-based alternative: the general-only pruned model fine-tuned with LoRA on the same domain
    calibration text (its first ``samples`` texts, cut to ``length`` tokens), then evaluated like the others.

    The merged LoRA update is dense, so the merged model is no longer sparse; it is evaluated as merged
    (``eval``) and with the pruning mask put back (``masked_eval``, as sparse as the pruned model)."""
    from damoc.evaluate.report_eval import evaluate_model
    from damoc.model.calibrated.general_text import load_source_texts
    from damoc.train.finetune import FinetuneConfig, finetune

    texts = load_source_texts(a.domain, "calib", calib_cfg.dev_size, calib_cfg.seed, calib_cfg.val_size)
    texts = [t for t in texts if t.strip()][: a.samples]
    ft = FinetuneConfig(method="lora", epochs=a.lora_epochs, batch_size=4, max_length=a.length, lr=a.lora_lr,
                        head_positions="all")  # fmt: skip
    masks = _zero_masks(model)
    t0 = time.perf_counter()
    res = finetune(model, tok, [("", t) for t in texts], ft, desc="domain LoRA")
    wall = time.perf_counter() - t0
    ev = evaluate_model(res.model, tok, _eval_cfg(a, a.domain), "general-only + domain LoRA").__dict__
    merged_sparsity = _sparsity(res.model)
    _apply_masks(res.model, masks)
    masked = evaluate_model(res.model, tok, _eval_cfg(a, a.domain), "general-only + domain LoRA, masked")
    return {"finetune": ft.model_dump(), "texts": len(texts), "steps": res.steps, "tokens": res.tokens,
            "train_s": wall, "eval": ev, "sparsity_after_merge": merged_sparsity,
            "masked_eval": masked.__dict__, "sparsity_masked": _sparsity(res.model)}  # fmt: skip


def alpha_table(choice: dict) -> str:
    def f(x, nd=2):
        return "–" if x is None else f"{x:.{nd}f}"

    dense = choice.get("dense") or {}
    lines = [
        "| run | val general ppl | val domain ppl | eval general ppl | eval domain ppl | eval task bits/byte |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    if dense:
        d, e = dense["val"], dense["eval"]
        lines.append(
            f"| dense | {f(d['general'])} | {f(d['domain'])} | {f(e['general_ppl'])} | {f(e['domain_ppl'])} | {f(e['task_bpb'], 3)} |"
        )
    for k, rec in choice["points"].items():
        mark = " **(chosen on val)**" if float(k) == choice["choice"]["alpha"] else ""
        v, e = rec["val"], rec["eval"]
        lines.append(f"| α={float(k):g}{mark} | {f(v['general'])} | {f(v['domain'])} | {f(e['general_ppl'])} | "
                     f"{f(e['domain_ppl'])} | {f(e['task_bpb'], 3)} |")  # fmt: skip
        if "lora" in rec:
            e = rec["lora"]["eval"]
            lines.append(f"| α=0 + domain LoRA (merged, dense) | – | – | {f(e['general_ppl'])} | {f(e['domain_ppl'])} | "
                         f"{f(e['task_bpb'], 3)} |")  # fmt: skip
            if "masked_eval" in rec["lora"]:
                e = rec["lora"]["masked_eval"]
                lines.append(f"| α=0 + domain LoRA, mask put back | – | – | {f(e['general_ppl'])} | "
                             f"{f(e['domain_ppl'])} | {f(e['task_bpb'], 3)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["smollm2-135m"])
    ap.add_argument("--domain", default="pubmedqa")
    ap.add_argument("--methods", nargs="+", default=["sparsegpt", "wanda"])
    ap.add_argument("--patterns", nargs="+", default=["unstructured", "2:4"])
    ap.add_argument("--samples", type=int, default=32, help="calibration sequences per source")
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--eval-samples", type=int, default=16, help="perplexity windows per source")
    ap.add_argument("--task-samples", type=int, default=40)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--reference", default=None, help="python of a venv with llmcompressor (parity runs)")
    ap.add_argument("--gptq", action="store_true", help="also GPTQ 4-bit (and its reference)")
    ap.add_argument(
        "--group-size",
        type=int,
        default=128,
        help="GPTQ columns per scale, ours and the reference (llm-compressor needs it to divide every width)",
    )
    ap.add_argument(
        "--static-groups",
        action="store_true",
        help="our GPTQ with static group parameters (as the reference computes them); rows named -static",
    )
    ap.add_argument(
        "--extra-alphas",
        nargs="*",
        type=float,
        default=[],
        help="more cross-calibration weights besides 0.5 (rows named cross-a<α>)",
    )
    ap.add_argument(
        "--tag",
        default="",
        help="records under <model>-<tag>/ (alpha_val/<model>-<domain>-<tag>/ with --alpha-search), e.g. for a different --samples",
    )
    ap.add_argument(
        "--alpha-search", action="store_true", help="choose α on a validation part (see alpha_search_run)"
    )
    ap.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--val-size", type=float, default=0.2, help="validation share of each calibration part")
    ap.add_argument("--val-samples", type=int, default=8, help="validation windows per source")
    ap.add_argument("--general-tolerance", type=float, default=0.02)
    ap.add_argument("--lora-baseline", action="store_true", help="also general-only + a domain LoRA")
    ap.add_argument("--lora-epochs", type=float, default=4.0)
    ap.add_argument("--lora-lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.alpha_search:
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        for model in a.models:
            for method in a.methods:
                for pattern in a.patterns:
                    out = alpha_search_run(a, model, method, pattern)
                    md = (
                        f"## {model}, {a.domain}, {method} {pattern}\n\n{out['choice']['reason']}\n\n"
                        + alpha_table(out)
                    )
                    (alpha_dir(a, model) / f"{method}-{pattern.replace(':', 'of')}.md").write_text(md)
                    print(md)
        return
    alphas = {**ALPHAS, **{f"cross-a{x:g}": x for x in a.extra_alphas}}
    for model in a.models:
        rec_dir = RECORDS / (f"{model}-{a.tag}" if a.tag else model)
        rec_dir.mkdir(parents=True, exist_ok=True)
        log = rec_dir / "run.log"
        with tempfile.TemporaryDirectory(prefix="damoc-xcal-", dir=os.environ.get("TMPDIR")) as tmp:
            work = Path(tmp)
            rows = [run_ours(a, model, "dense", [], rec_dir, work, log)]
            refs = {}
            # each reference run right after our general-only run of the same setting (same machine load)
            for method in a.methods:
                for pattern in a.patterns:
                    pat = [] if pattern == "unstructured" else ["--pattern", pattern]
                    for label, alpha in alphas.items():
                        name = f"{method}-{pattern.replace(':', 'of')}-{label}"
                        comp = ["prune", "calibrated", "--method", method, *pat, "--alpha", str(alpha)]
                        rows.append(run_ours(a, model, name, comp, rec_dir, work, log))
                        if a.reference and label == "general-only":
                            refs[name] = run_reference(a, model, name, method, pat, rec_dir, work, log)
            gq = "gptq-4bit" + ("" if a.group_size == 128 else f"-g{a.group_size}")
            gq_args = ["--bits", "4", "--group-size", str(a.group_size)]
            ours_gq, ours_gq_args = gq, gq_args
            if a.static_groups:
                ours_gq, ours_gq_args = f"{gq}-static", [*gq_args, "--static-groups"]
            if a.gptq:
                for label, alpha in alphas.items():
                    comp = ["quantize", "--method", "gptq", *ours_gq_args, "--alpha", str(alpha)]
                    rows.append(run_ours(a, model, f"{ours_gq}-{label}", comp, rec_dir, work, log))
                    if a.reference and label == "general-only":
                        name = f"{gq}-general-only"
                        refs[name] = run_reference(a, model, name, "gptq", gq_args, rec_dir, work, log)
        md = f"## {model}\n\n" + table(rows, refs)
        (rec_dir / "table.md").write_text(md)
        print(md)


if __name__ == "__main__":
    main()
