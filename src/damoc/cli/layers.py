"""`damoc layers score` and `damoc prune layers`: layer importance, and removal with merging."""

from __future__ import annotations

from pathlib import Path

import typer

from damoc.cli.apps import layers_app, prune_app
from damoc.cli.options import DEVICE_OPT, DTYPE_OPT, OFFLINE_OPT, use_hardware
from damoc.errors import DamocError
from damoc.io.files import check_output_dir, write_json_atomic
from damoc.io.outputs import check_output_file

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.


def _parse_layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        out = [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise DamocError(f"--layers must be comma-separated integers, got '{text}'") from None
    if not out:
        raise DamocError("--layers is empty")
    return out


def _texts(data: str, limit: int | None = None) -> list[str]:
    from damoc.io.tasks import calibration_texts

    texts = [t for t in calibration_texts(data) if t.strip()]
    if not texts:
        raise DamocError(f"{data}: no text to calibrate on")
    return texts[:limit] if limit else texts


@layers_app.command("score")
def score(
    model: str = typer.Argument(..., help="A local Hugging Face model directory or a zoo name."),
    data: str = typer.Option(
        ..., "--data", help="Calibration text: a task file, a built-in task name, or a .txt."
    ),
    samples: int = typer.Option(64, "--samples", min=1, help="How many calibration texts."),
    length: int = typer.Option(
        256, "--length", min=2, help="Tokens per calibration text (longer ones are cut)."
    ),
    metric: str = typer.Option("bi", "--metric", help="bi (block influence, per layer) or angular (blocks)."),
    block: int = typer.Option(1, "--block", min=1, help="Block size n for the angular distance d(l, l+n)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Texts per forward pass."),
    out: Path | None = typer.Option(None, "--out", help="Write the scores as JSON here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Score every decoder layer on calibration text: block influence BI = 1 − cos(h_l, h_l+1)
    (low = the layer changes little = safe to remove), and with --metric angular the angular distance of
    every block of --block layers (Gromov et al.). One forward pass per batch."""
    from damoc.model.arch import load_model
    from damoc.model.importance import METRICS, choose_layers, layer_scores

    if metric not in METRICS:
        raise DamocError(f"unknown --metric '{metric}' (known: {', '.join(METRICS)})")
    use_hardware(device, dtype, offline)
    if out is not None:
        check_output_file(out, overwrite)
    from damoc.model.arch import check_model

    check_model(model)
    texts = _texts(data, samples)
    mdl, tok = load_model(model)
    res = layer_scores(mdl, tok, texts, metric=metric, block=block, max_length=length, batch_size=batch_size)
    n_pick = block if metric == "angular" else max(1, res.n_layers // 4)
    picked = set(choose_layers(res, n_pick)) if res.n_layers > n_pick + 2 else set()
    head = f"{'layer':>5}  {'BI':>8}" + (f"  {f'd(l,l+{block})':>10}" if metric == "angular" else "")
    typer.echo(head)
    for i in range(res.n_layers):
        row = f"{i:>5}  {res.bi[i]:>8.4f}"
        if metric == "angular":
            row += f"  {res.angular[i]:>10.4f}" if i < len(res.angular) else f"  {'':>10}"
        typer.echo(row + ("  *" if i in picked else ""))
    typer.echo(f"{res.n_tokens} tokens from {len(texts)} texts; * = the {n_pick} layers that would go first")
    if out is not None:
        from dataclasses import asdict

        write_json_atomic(out, {"model": model, "data": data, **asdict(res)})
        typer.echo(f"wrote {out}")


@prune_app.command("layers")
def prune_layers_cmd(
    model: str | None = typer.Argument(None, help="A local Hugging Face model directory or a zoo name."),
    remove: int | None = typer.Option(None, "--remove", min=0, help="How many layers to remove."),
    fraction: float | None = typer.Option(None, "--fraction", help="Or: the fraction of layers to remove."),
    layers: str | None = typer.Option(None, "--layers", help="Or: exactly these layers, e.g. 12,13,14."),
    metric: str = typer.Option("bi", "--metric", help="bi: lowest block influence; angular: best block."),
    merge: str = typer.Option("linear", "--merge", help="none, magnitude, dare or linear."),
    density: float = typer.Option(
        0.2, "--density", help="magnitude/dare: fraction of each task vector kept."
    ),
    scale: float = typer.Option(1.0, "--scale", help="magnitude/dare: λ for the task vectors."),
    data: str | None = typer.Option(
        None, "--data", help="Calibration text: task file, built-in task or .txt."
    ),
    samples: int = typer.Option(64, "--samples", min=1, help="How many calibration texts."),
    length: int = typer.Option(256, "--length", min=2, help="Tokens per calibration text."),
    out: Path | None = typer.Option(None, "--out", help="Output directory for the pruned checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    config: Path | None = typer.Option(None, "--config", help="Run a YAML job (job: prune-layers) instead."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Remove decoder layers, merge them into the kept ones, and write a loadable Hugging Face checkpoint
    plus damoc_prune.json. The first and last layers are protected."""
    from damoc.config import load_job, parse_config
    from damoc.model.arch import check_model, load_model, resolve_model
    from damoc.model.config import PruneLayersJob
    from damoc.model.layer_pruning import prune_layers, save_pruned
    from damoc.model.merge import MERGES

    if config is not None:
        if model is not None:
            raise DamocError("give either a MODEL with options or --config JOB.yaml, not both")
        job = load_job(config)
        if not isinstance(job, PruneLayersJob):
            raise DamocError(f"{config}: a '{job.job}' job, not 'prune-layers'")
        if overwrite:
            job.overwrite = True
    else:
        if model is None or data is None or out is None:
            raise DamocError("give MODEL, --data and --out (or --config JOB.yaml)")
        fields = dict(
            job="prune-layers",
            model=model,
            data=data,
            out=str(out),
            overwrite=overwrite,
            remove=remove,
            fraction=fraction,
            layers=_parse_layers(layers),
            metric=metric,
            merge=merge,
            density=density,
            scale=scale,
            calib_samples=samples,
            calib_length=length,
        )
        MERGES.get(merge)  # an unknown name: one line with the known ones
        job = parse_config(PruneLayersJob, fields)
    cfg = job.prune_config()
    if cfg.remove is None and cfg.fraction is None and cfg.layers is None:
        raise DamocError("say how many layers to remove: --remove N, --fraction F or --layers i,j")
    use_hardware(device, dtype, offline, job)
    check_output_dir(job.out, job.overwrite)
    check_model(job.model)
    resolve_model(job.model)
    texts = _texts(job.data)
    mdl, tok = load_model(job.model)
    report = prune_layers(mdl, tok, texts, cfg)
    report.source = job.model
    save_pruned(mdl, tok, job.out, report, overwrite=job.overwrite)
    typer.echo(
        f"removed layers {report.removed} ({report.metric}, merge {report.merge}): "
        f"{report.n_before} -> {report.n_after} layers, {report.params_before / 1e6:.1f}M -> "
        f"{report.params_after / 1e6:.1f}M parameters"
    )
    if "fold_kept" in report.merge_details and not report.merge_details["fold_kept"]:
        typer.echo("note: the linear fold did not beat plain removal on calibration text; plain removal kept")
    typer.echo(f"wrote {job.out}")
