"""`damoc prune calibrated`, `damoc quantize` and `damoc eval` (docs/calibrated.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from damoc.cli.apps import app, prune_app
from damoc.cli.options import DEVICE_OPT, DTYPE_OPT, OFFLINE_OPT, use_hardware
from damoc.errors import DamocError
from damoc.io.files import write_json_atomic
from damoc.io.outputs import check_output_dir, check_output_file

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.

_GENERAL_HELP = (
    "General text: 'general' (bundled SQuAD paragraphs), a task name/file or a .txt file; 'none' for none."
)
_DOMAIN_HELP = (
    "Domain text: a built-in task (pubmedqa, finance), a task file (.jsonl/.csv/.json) or a .txt file."
)


def _src(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def _list_methods(family: str) -> None:
    from damoc.model.calibrated import METHODS

    for e in METHODS.entries():
        if (e.family or "prune") == family:
            typer.echo(f"{e.name:10s} {e.help}  ({e.where})")


def _calibration(general, domain, alpha, samples, length, batch_size, seed, dev_size) -> dict:
    return {
        "general": _src(general),
        "domain": _src(domain),
        "alpha": alpha,
        "samples": samples,
        "length": length,
        "batch_size": batch_size,
        "seed": seed,
        "dev_size": dev_size,
    }


def _summary(record, out: Path) -> None:
    w = ", ".join(f"{k} {v:g}" for k, v in record.weights.items()) or "none"
    errs = [s["rel_error"] for s in record.layers if s["rel_error"] is not None]
    mean_err = f", mean relative layer error {sum(errs) / len(errs):.4f}" if errs else ""
    sparsity = f", sparsity {record.sparsity:.3f}" if record.family == "prune" else ""
    typer.echo(
        f"{record.method}: {len(record.layers)} layers{sparsity}{mean_err}; "
        f"calibration weights: {w}; {record.wall_s:.1f}s, peak {record.peak_rss_mb:.0f} MiB -> {out}"
    )


def _run_job(
    family: str,
    list_: bool,
    model,
    out,
    method: str,
    spec: dict,
    calibration: dict,
    overwrite: bool,
    extra: dict | None = None,
    hardware: tuple[str | None, str | None, bool] = (None, None, False),
):
    """List the family's methods, or parse the job (one-line errors) and run it, then print the summary."""
    if list_:
        _list_methods(family)
        return
    from damoc.config import parse_config
    from damoc.model.calibrated.config import PruneCalibratedJob, QuantizeJob
    from damoc.model.calibrated.run import compress_job

    if model is None or out is None:
        raise DamocError("give a MODEL and --out DIR (see --help)")
    cls, spec_key = (PruneCalibratedJob, "prune") if family == "prune" else (QuantizeJob, "quant")
    data = {"model": model, "out": str(out), "method": method, spec_key: spec, "calibration": calibration}
    job = parse_config(cls, {**data, **(extra or {}), "overwrite": overwrite})
    use_hardware(*hardware, job=job)
    from damoc.model.arch import check_model

    check_output_dir(job.out, job.overwrite)
    check_model(job.model)
    _summary(compress_job(job), out)


MODEL_ARG = typer.Argument(None, help="A local HF model directory, a zoo name or a Hugging Face hub id.")
GENERAL_OPT = typer.Option("general", "--general", help=_GENERAL_HELP)
DOMAIN_OPT = typer.Option(None, "--domain", help=_DOMAIN_HELP)
ALPHA_OPT = typer.Option(0.5, "--alpha", help="Domain weight α in H = (1-α) H_general + α H_domain.")
SAMPLES_OPT = typer.Option(32, "--samples", help="Calibration sequences per source.")
LENGTH_OPT = typer.Option(256, "--length", help="Tokens per calibration sequence.")
BATCH_OPT = typer.Option(8, "--batch-size", help="Sequences per block forward.")
SEED_OPT = typer.Option(0, "--seed", help="Seed for shuffling and the held-out split.")
DEV_OPT = typer.Option(0.2, "--dev-size", help="Fraction of each source held out (never calibrated on).")
OUT_OPT = typer.Option(None, "--out", "-o", help="Output directory (a loadable HF checkpoint).")
OVERWRITE_OPT = typer.Option(False, "--overwrite", help="Replace a non-empty output directory.")


@prune_app.command("calibrated")
def prune_calibrated(
    model: str = MODEL_ARG,
    method: str = typer.Option(
        "sparsegpt", "--method", "-m", help="magnitude, wanda or sparsegpt (see --list)."
    ),
    sparsity: float = typer.Option(
        None, "--sparsity", help="Fraction of weights zeroed per layer, in [0, 1) (0.5)."
    ),
    pattern: str = typer.Option(
        None, "--pattern", help="N:M semi-structured sparsity, e.g. 2:4 (keep 2 of 4)."
    ),
    general: str = GENERAL_OPT,
    domain: str = DOMAIN_OPT,
    alpha: float = ALPHA_OPT,
    samples: int = SAMPLES_OPT,
    length: int = LENGTH_OPT,
    block_size: int = typer.Option(128, "--block-size", help="SparseGPT lazy-update block (columns)."),
    damp: float = typer.Option(0.01, "--damp", help="SparseGPT damping, fraction of mean diag(H)."),
    batch_size: int = BATCH_OPT,
    seed: int = SEED_OPT,
    dev_size: float = DEV_OPT,
    out: Path = OUT_OPT,
    overwrite: bool = OVERWRITE_OPT,
    list_: bool = typer.Option(False, "--list", help="List the pruning methods and exit."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Prune weights with calibration: Hessians from general and domain text, mixed by α, layer by layer."""
    _run_job(
        "prune",
        list_,
        model,
        out,
        method,
        {"sparsity": sparsity, "pattern": pattern, "block_size": block_size, "damp": damp},
        _calibration(general, domain, alpha, samples, length, batch_size, seed, dev_size),
        overwrite,
        hardware=(device, dtype, offline),
    )


@app.command("quantize")
def quantize(
    model: str = MODEL_ARG,
    method: str = typer.Option("gptq", "--method", "-m", help="gptq or rtn (see --list)."),
    bits: int = typer.Option(4, "--bits", help="Bits per weight: 2, 3, 4 or 8."),
    group_size: int = typer.Option(128, "--group-size", help="Input columns per scale/zero (-1: whole row)."),
    act_order: bool = typer.Option(
        False, "--act-order", help="GPTQ: columns in order of decreasing diag(H)."
    ),
    general: str = GENERAL_OPT,
    domain: str = DOMAIN_OPT,
    alpha: float = ALPHA_OPT,
    samples: int = SAMPLES_OPT,
    length: int = LENGTH_OPT,
    damp: float = typer.Option(0.01, "--damp", help="GPTQ damping, fraction of mean diag(H)."),
    static_groups: bool = typer.Option(
        False,
        "--static-groups",
        help="GPTQ: group scales/zeros from the original weights before the sweep (llm-compressor's way).",
    ),
    symmetric: bool = typer.Option(
        False, "--symmetric", help="Symmetric about zero, no zero points (default: asymmetric min-max)."
    ),
    keep_zeros: bool = typer.Option(
        False, "--keep-zeros", help="Weights that are zero stay zero (quantize a pruned, e.g. 2:4, model)."
    ),
    format_: str = typer.Option(
        "compressed-tensors",
        "--format",
        help="compressed-tensors: packed ints + quantization_config (vLLM, transformers); "
        "dense: dequantized plain weights.",
    ),
    batch_size: int = BATCH_OPT,
    seed: int = SEED_OPT,
    dev_size: float = DEV_OPT,
    out: Path = OUT_OPT,
    overwrite: bool = OVERWRITE_OPT,
    list_: bool = typer.Option(False, "--list", help="List the quantization methods and exit."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Quantize weights (GPTQ) with cross-calibration; saves a compressed-tensors (pack-quantized) checkpoint."""
    _run_job(
        "quantize",
        list_,
        model,
        out,
        method,
        {
            "bits": bits,
            "group_size": group_size,
            "act_order": act_order,
            "damp": damp,
            "static_groups": static_groups,
            "symmetric": symmetric,
            "keep_zeros": keep_zeros,
        },
        _calibration(general, domain, alpha, samples, length, batch_size, seed, dev_size),
        overwrite,
        {"format": format_},
        hardware=(device, dtype, offline),
    )


@app.command("eval")
def eval_(
    model: str = typer.Argument(..., help="A local HF model directory, a zoo name or a Hugging Face hub id."),
    general: str = GENERAL_OPT,
    domain: str = DOMAIN_OPT,
    task: str = typer.Option(
        None, "--task", help="Task for the domain score (default: --domain if it is a task)."
    ),
    samples: int = typer.Option(32, "--samples", help="Perplexity windows per source."),
    length: int = typer.Option(256, "--length", help="Tokens per perplexity window."),
    task_samples: int = typer.Option(100, "--task-samples", help="Dev examples scored."),
    max_length: int = typer.Option(512, "--max-length", help="Token limit of prompt + answer."),
    batch_size: int = BATCH_OPT,
    seed: int = SEED_OPT,
    dev_size: float = DEV_OPT,
    out: Path = typer.Option(None, "--out", "-o", help="Write the report as JSON here."),
    split: str = typer.Option(
        None,
        "--split",
        help="Score the task's own split of this name (a saved DatasetDict or a hub dataset); default: its "
        "validation split when it has one, else --dev-size rows held out.",
    ),
    prompt_format: str = typer.Option(
        "raw", "--prompt-format", help="raw (Context/Question/Answer:), chat (the chat template) or auto."
    ),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Perplexity on held-out general and domain text, and the domain task score (bits/byte, label accuracy)."""
    from damoc.config import parse_config
    from damoc.evaluate.report_eval import EvalConfig, evaluate_model, render_markdown
    from damoc.model.arch import check_model
    from damoc.model.calibrated.run import load_model_quietly

    cfg = parse_config(
        EvalConfig,
        {
            "general": _src(general),
            "domain": _src(domain),
            "task": task,
            "samples": samples,
            "length": length,
            "task_samples": task_samples,
            "max_length": max_length,
            "batch_size": batch_size,
            "seed": seed,
            "dev_size": dev_size,
            "split": split,
            "prompt_format": prompt_format,
        },
    )
    if not (cfg.general or cfg.domain or cfg.task):
        raise DamocError("nothing to evaluate: give --general, --domain or --task")
    use_hardware(device, dtype, offline)
    if out is not None:
        check_output_file(out, overwrite)
    check_model(model)
    from damoc.evaluate.report_eval import _task_source, eval_task

    if cfg.split is not None and _task_source(cfg):
        eval_task(_task_source(cfg), cfg)  # an unknown split fails before the model loads
    m, tok = load_model_quietly(model)
    report = evaluate_model(m, tok, cfg, name=str(model))
    if out is not None:
        write_json_atomic(out, report)
    typer.echo(render_markdown([report]), nl=False)
    if report.task is not None and report.n_task < cfg.task_samples:
        typer.echo(
            f"note: scored {report.n_task} dev rows of task '{report.task}', fewer than --task-samples "
            f"{cfg.task_samples} (the task holds out only {report.n_task}; raise --dev-size for more)",
            err=True,
        )
