"""FineScope commands: `damoc curate`, `damoc prune structured`, `damoc distill`, `damoc finescope`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from damoc.cli.apps import app, prune_app
from damoc.cli.options import DEVICE_OPT, DTYPE_OPT, OFFLINE_OPT, use_hardware
from damoc.errors import DamocError
from damoc.io.outputs import check_output_dir, check_output_file

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.


def _split(csv: str) -> list[str]:
    return [s.strip() for s in csv.split(",") if s.strip()]


@app.command("curate")
def curate_cmd(
    pool: str = typer.Option(
        None, "--pool", help="Pool of candidate rows (JSONL/CSV/JSON or a built-in task)."
    ),
    seeds: str = typer.Option(
        None, "--seeds", help="A few in-domain seed rows (default: the first 10 are used)."
    ),
    model: str = typer.Option(None, "--model", "-m", help="Source model (HF dir or zoo name) for the SAE."),
    top: int = typer.Option(200, "--top", help="M: how many pool rows to keep."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output .jsonl (the report goes to <stem>.report.json)."
    ),
    method: str = typer.Option("sae", "--method", help="Scoring method: sae, embed, tfidf, random."),
    compare: str = typer.Option(
        "embed,random", "--compare", help="Comma list of methods to compare against."
    ),
    layer: int = typer.Option(None, "--layer", help="Decoder layer feeding the SAE (default: middle)."),
    expansion: int = typer.Option(16, "--expansion", help="SAE width = expansion x d_model."),
    k: int = typer.Option(32, "--k", help="Active SAE latents per token (TopK)."),
    sae_steps: int = typer.Option(400, "--sae-steps", help="SAE training steps."),
    max_length: int = typer.Option(128, "--max-length", help="Tokens per row fed to the model."),
    reduce: str = typer.Option("mean", "--reduce", help="Combine similarity over seeds: mean or max."),
    domain_field: str = typer.Option(
        "domain", "--domain-field", help="Pool column with a known domain (precision)."
    ),
    text_view: str = typer.Option(
        "text",
        "--text-view",
        help="Text of each row scored: text (question+context+answer), prompt, question.",
    ),
    sae: str = typer.Option(
        None,
        "--sae",
        help="Use this trained SAE instead of training one: a damoc SAE directory or a sae-lens one "
        "(cfg.json + sae_weights.safetensors).",
    ),
    sae_cache: str = typer.Option(
        "~/.cache/damoc/sae",
        "--sae-cache",
        help="Keep trained SAEs here by (model, layer, pool, settings) and reuse them; 'none' = off.",
    ),
    save_sae: Path = typer.Option(None, "--save-sae", help="Also write the SAE used into this directory."),
    save_sae_format: str = typer.Option(
        "damoc", "--save-sae-format", help="Layout of --save-sae: damoc or sae-lens."
    ),
    job: Path = typer.Option(None, "--job", help="A YAML 'curate' job instead of the options above."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Pick the M pool rows most like the seed rows (FineScope: TopK-SAE signatures), write them with scores."""
    from damoc.config import load_job, parse_config
    from damoc.curate.config import CurateJob
    from damoc.curate.pipeline import report_path, run_curate

    if job is not None:
        cfg = load_job(job)
        if not isinstance(cfg, CurateJob):
            raise DamocError(f"{job}: a '{cfg.job}' job; damoc curate runs 'curate' jobs")
    else:
        if not pool or not seeds or out is None:
            raise DamocError("--pool, --seeds and --out are required (or pass --job)")
        data: dict[str, Any] = {
            "job": "curate",
            "pool": pool,
            "seeds": seeds,
            "model": model,
            "top": top,
            "out": str(out),
            "method": method,
            "compare": [c for c in _split(compare) if c != method],
            "layer": layer,
            "reduce": reduce,
            "max_length": max_length,
            "domain_field": domain_field,
            "text_view": text_view,
            "sae_path": sae,
            "sae_cache": None if sae_cache.strip().lower() in ("", "none") else sae_cache,
            "save_sae": str(save_sae) if save_sae else None,
            "save_sae_format": save_sae_format,
            "overwrite": overwrite,
            "sae": {"expansion": expansion, "k": k, "steps": sae_steps},
        }
        cfg = parse_config(CurateJob, data, where="curate")
    use_hardware(device, dtype, offline, cfg)

    check_output_file(cfg.out, cfg.overwrite)
    check_output_file(report_path(cfg.out), cfg.overwrite, "report")
    if cfg.model:
        from damoc.model.arch import check_model

        check_model(cfg.model, "--model")
    curated = run_curate(cfg)
    rep = curated.report
    typer.echo(f"kept {rep.top} of {rep.n_pool} rows -> {cfg.out} (report: {report_path(cfg.out)})")
    for m in rep.methods:
        p = "n/a" if m.precision is None else f"{m.precision:.3f}"
        typer.echo(
            f"  {m.method:8s} precision {p}  overlap with {rep.method} {m.overlap_with_primary:.2f}  {m.wall_s:.1f}s"
        )
    if rep.random_expected_precision is not None:
        typer.echo(f"  domain '{rep.target_domain}' share of the pool: {rep.random_expected_precision:.3f}")
    if rep.sae:
        names = {"activations_s": "model forward", "train_s": "SAE steps", "encode_s": "signatures"}
        parts = ", ".join(f"{v} {rep.sae[k]:.1f}s" for k, v in names.items() if k in rep.sae)
        typer.echo(f"  SAE ({rep.sae.get('source')}, layer {rep.sae.get('layer')}): {parts}")
    if cfg.save_sae and curated.sae is not None:
        typer.echo(f"  SAE written to {cfg.save_sae} ({cfg.save_sae_format} layout)")


@prune_app.command("structured")
def prune_structured_cmd(
    model: str = typer.Argument(..., help="Model to prune (HF dir or zoo name)."),
    ratio: float = typer.Option(0.3, "--ratio", help="Fraction of all parameters to remove, in (0, 1)."),
    data: str = typer.Option(
        None, "--data", help="Calibration rows for Taylor importance (e.g. curated.jsonl)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output checkpoint directory."),
    importance: str = typer.Option("taylor", "--importance", help="taylor, magnitude or random."),
    attention_unit: str = typer.Option(
        "query_heads", "--attention-unit", help="query_heads (same count per KV group) or kv_groups."
    ),
    samples: int = typer.Option(32, "--samples", help="Calibration rows used for the gradients."),
    max_length: int = typer.Option(256, "--max-length", help="Tokens per calibration row."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """LLM-Pruner-style structured pruning (heads + MLP channels, uniform per layer) to a loadable checkpoint."""
    from damoc.config import parse_config
    from damoc.model.structured.config import StructuredPruneConfig
    from damoc.model.structured.run import prune_to_dir

    if not 0.0 < ratio < 1.0:
        raise DamocError(f"--ratio must be in (0, 1), got {ratio}")
    use_hardware(device, dtype, offline)
    from damoc.model.arch import check_model

    check_output_dir(out, overwrite)
    check_model(model)
    cfg = parse_config(
        StructuredPruneConfig,
        {
            "ratio": ratio,
            "importance": importance,
            "attention_unit": attention_unit,
            "samples": samples,
            "max_length": max_length,
        },
        where="prune structured",
    )
    rep = prune_to_dir(model, data, out, cfg, overwrite)
    typer.echo(
        f"{rep.params_before:,} -> {rep.params_after:,} parameters ({100 * rep.ratio_achieved:.1f}% removed); "
        f"heads {rep.num_attention_heads[0]}->{rep.num_attention_heads[1]}, kv {rep.num_key_value_heads[0]}->"
        f"{rep.num_key_value_heads[1]}, mlp {rep.intermediate_size[0]}->{rep.intermediate_size[1]} -> {out}"
    )


@app.command("distill")
def distill_cmd(
    teacher: str = typer.Option(..., "--teacher", help="The unpruned source model."),
    student: str = typer.Option(..., "--student", help="The pruned model to train."),
    data: str = typer.Option(
        ..., "--data", help="Rows whose prompts the teacher answers (e.g. curated.jsonl)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output checkpoint directory."),
    method: str = typer.Option("lora", "--method", help="lora or full."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the teacher answers."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps."),
    lr: float = typer.Option(2e-4, "--lr", help="Learning rate."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Longest teacher answer, in tokens."),
    max_rows: int = typer.Option(None, "--max-rows", help="Use only the first N rows of --data."),
    teacher_mode: str = typer.Option(
        "rewrite_reference",
        "--teacher-mode",
        help="answer (the teacher answers the prompt) or rewrite_reference (it restates the gold answer; "
        "the gold answer is kept where the rewrite loses it).",
    ),
    kl_weight: float = typer.Option(
        1.0, "--kl-weight", help="Weight of KL(teacher || student) on the answer tokens (0 = off)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Self-data distillation: the teacher answers the prompts greedily, the student is fine-tuned on them."""
    from damoc.config import parse_config
    from damoc.train.distill import DistillConfig, distill_to_dir

    if max_rows is not None and max_rows < 1:
        raise DamocError(f"--max-rows must be at least 1, got {max_rows}")
    from damoc.model.arch import check_model

    check_output_dir(out, overwrite)
    check_model(teacher, "--teacher")
    check_model(student, "--student")
    cfg = parse_config(
        DistillConfig,
        {
            "generation": {"max_new_tokens": max_new_tokens},
            "finetune": {"method": method, "epochs": epochs, "max_steps": max_steps, "lr": lr},
            "teacher_mode": teacher_mode,
            "kl_weight": kl_weight,
        },
        where="distill",
    )
    use_hardware(device, dtype, offline)
    res = distill_to_dir(teacher, student, data, str(out), cfg, overwrite, max_rows)
    fb = f" ({res.stats['fallbacks']} gold fallbacks)" if cfg.teacher_mode == "rewrite_reference" else ""
    typer.echo(
        f"trained on {res.kept} teacher answers{fb}: {res.train.steps} steps, {res.train.tokens:,} tokens, "
        f"final loss {res.train.losses[-1]:.3f} -> {out}"
    )


@app.command("finescope")
def finescope_cmd(
    job: Path = typer.Argument(..., help="A YAML 'finescope' job (see examples/finescope.yaml)."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (overrides the job's 'out')."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty run directory."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """FineScope end to end: SAE curation -> structured pruning -> self-distillation, with domain scores."""
    from damoc.config import load_job
    from damoc.curate.config import FinescopeJob
    from damoc.curate.finescope_report import render_markdown
    from damoc.curate.recipe import run_finescope

    cfg = load_job(job)
    if not isinstance(cfg, FinescopeJob):
        raise DamocError(f"{job}: a '{cfg.job}' job; damoc finescope runs 'finescope' jobs")
    if out is not None:
        cfg.out = str(out)
    if overwrite:
        cfg.overwrite = True
    use_hardware(device, dtype, offline, cfg)
    from damoc.model.arch import check_model

    check_output_dir(cfg.out, cfg.overwrite)
    check_model(cfg.model)
    report = run_finescope(cfg)
    typer.echo(render_markdown(report), nl=False)
    typer.echo(f"-> {cfg.out}")
