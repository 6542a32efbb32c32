"""``damoc select``: rank candidate models for a task with cheap proxy fine-tunes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from damoc.cli.apps import app
from damoc.errors import DamocError
from damoc.io.outputs import check_cache_dir, check_run_dir

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.

# Exit codes of `damoc select` besides 0 (every unit ran) and 2 (bad input, nothing run):
EXIT_UNITS_FAILED = 3  # the run finished, but some units failed (the leaderboard says which and why)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: finished units are kept, --resume continues


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    *parents, last = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def _splits(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        role, sep, name = item.partition("=")
        if not sep or not name.strip():
            raise DamocError(f"--split takes ROLE=NAME (train=... or dev=...), got '{item}'")
        out[role.strip()] = name.strip()
    return out


@app.command("select")
def select(
    job: Path | None = typer.Argument(None, help="A YAML job file (job: select); flags override its values."),
    task: str | None = typer.Option(
        None, "--task", "-t", help="Task file/directory or built-in name (pubmedqa, finance)."
    ),
    candidate: list[str] | None = typer.Option(
        None, "--candidate", "-c", help="A candidate: zoo name or HF model directory (repeat the flag)."
    ),
    metric: str | None = typer.Option(None, "--metric", "-m", help="Metric to rank by (--list-metrics)."),
    run_dir: str | None = typer.Option(
        None, "--run-dir", "-o", help="Run directory (artifacts, records, report)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue a run: skip units that already have a record."
    ),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: rerun failed units too."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete a non-empty run directory first."),
    validate: bool | None = typer.Option(
        None, "--validate/--no-validate", help="Also fully fine-tune each candidate for the true ranking."
    ),
    truth_lr: list[float] | None = typer.Option(
        None,
        "--truth-lr",
        help="With --validate: a learning rate of the ground-truth grid (repeat the flag); each candidate "
        "is fully fine-tuned once per rate and keeps its best dev score.",
    ),
    baselines: bool | None = typer.Option(
        None, "--baselines/--no-baselines", help="Zero-/few-shot baselines."
    ),
    dev_rows: int | None = typer.Option(
        None, "--dev-rows", help="Dev rows to score (the task must have them)."
    ),
    dev_size: float | None = typer.Option(
        None, "--dev-size", help="Held-out dev rows (count, or fraction < 1)."
    ),
    max_rows: int | None = typer.Option(None, "--max-rows", help="Bound the task to this many rows."),
    filter_method: str | None = typer.Option(None, "--filter", help="Data filter method, or 'none'."),
    budget: float | None = typer.Option(None, "--budget", help="Filter budget: fraction < 1 or a row count."),
    compress_rate: float | None = typer.Option(
        None, "--compress-rate", help="Token compression rate (kept/original)."
    ),
    no_compress: bool = typer.Option(False, "--no-compress", help="Skip token compression."),
    layer_fraction: float | None = typer.Option(
        None, "--layer-fraction", help="Fraction of layers to remove."
    ),
    merge: str | None = typer.Option(None, "--merge", help="Merge method for removed layers."),
    calibrated: str | None = typer.Option(
        None,
        "--calibrated",
        help="Also compress each proxy candidate with cross-calibration: sparsegpt, wanda, magnitude, gptq "
        "or rtn (domain text = the task's training subset).",
    ),
    calib_sparsity: float | None = typer.Option(
        None, "--calib-sparsity", help="Calibrated pruning: sparsity in [0, 1) (0.5)."
    ),
    calib_pattern: str | None = typer.Option(
        None, "--calib-pattern", help="Calibrated pruning: N:M, e.g. 2:4."
    ),
    calib_bits: int | None = typer.Option(None, "--calib-bits", help="Calibrated quantization: bits (4)."),
    calib_alpha: float | None = typer.Option(
        None, "--calib-alpha", help="Domain weight α in (1-α) H_general + α H_domain (0.5)."
    ),
    epochs: float | None = typer.Option(None, "--epochs", help="Proxy fine-tune epochs over its subset."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Proxy fine-tune steps (cap)."),
    token_budget: int | None = typer.Option(None, "--token-budget", help="Proxy fine-tune token budget."),
    few_shot_k: int | None = typer.Option(None, "--few-shot-k", help="Shots for the few-shot baseline."),
    adaptive: bool | None = typer.Option(
        None,
        "--adaptive/--no-adaptive",
        help="Adaptive proxy: every candidate starts on a small proxy, clearly worse ones are dropped after "
        "each round, the others get a larger one up to the full proxy (default: on with 4+ candidates).",
    ),
    budget_s: float | None = typer.Option(
        None, "--budget-s", help="Adaptive: stop before a round that would pass this many unit-seconds."
    ),
    max_train_tokens: int | None = typer.Option(
        None,
        "--max-train-tokens",
        help="Adaptive: stop before a round that would pass this many fine-tune tokens.",
    ),
    level: float | None = typer.Option(
        None, "--level", help="Coverage of the paired-bootstrap intervals, in (0, 1) (0.95)."
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Ground-truth cache directory."),
    backend: str | None = typer.Option(None, "--backend", help="local or ray."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (backend ray)."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Candidates run at once."),
    device: str | None = typer.Option(
        None, "--device", help="Where candidates run: auto (a GPU when one is visible), cpu, cuda or cuda:N."
    ),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="Candidates' weights: auto (float32 on a CPU, the checkpoint's own on a GPU), float32, "
        "bfloat16 or float16.",
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Use only local files and the Hugging Face cache (as HF_HUB_OFFLINE=1)."
    ),
    split: list[str] | None = typer.Option(
        None,
        "--split",
        help="ROLE=NAME: the task's own split for train or dev (repeat the flag), e.g. --split dev=test; a "
        "source with named splits uses train and validation by default.",
    ),
    prompt_format: str | None = typer.Option(
        None,
        "--prompt-format",
        help="raw (Context/Question/Answer:, the default), chat (each candidate's chat template) or auto "
        "(chat where the candidate has a template).",
    ),
    gpus: str | None = typer.Option(
        None, "--gpus", help="Local backend: GPU ids, one per running candidate (0,1)."
    ),
    question_field: str | None = typer.Option(None, "--question-field", help="Column holding the question."),
    answer_field: str | None = typer.Option(None, "--answer-field", help="Column holding the answer."),
    context_field: str | None = typer.Option(None, "--context-field", help="Column holding the context."),
    label_field: str | None = typer.Option(None, "--label-field", help="Column holding the label."),
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        help="Rewriting through an endpoint: the environment variable holding its key (a job file may "
        "name only OPENAI_API_KEY or the names listed in DAMOC_API_KEY_ENVS).",
    ),
    list_metrics: bool = typer.Option(False, "--list-metrics", help="List the metrics and exit."),
) -> int:
    """Rank candidate models for a task: compress the data and each candidate, run the same cheap proxy
    fine-tune on each (one subprocess per candidate), score on the dev split, and print the leaderboard.

    Every adjacent pair of each ranking gets a paired-bootstrap interval over the dev rows; pairs it cannot
    separate are marked "tied within noise", with the dev rows that would likely separate them. With 4 or
    more candidates (or --adaptive) the proxy runs in rounds of growing size and drops clearly worse
    candidates early (--budget-s / --max-train-tokens cap the rounds).

    With --validate, every uncompressed candidate is also fully fine-tuned (bounded, cached) to measure how
    well the proxy and the zero-/few-shot baselines rank: Spearman, Kendall, top-1 hit/regret, cost ratio.

    Exit codes: 0 every unit ran; 2 bad input (nothing run); 3 the run finished but some units failed
    (the last line says how many); 130 interrupted (finished units are kept: rerun with --resume).
    """
    from damoc.config import check_key_envs, parse_config, read_yaml

    if list_metrics:
        from damoc.evaluate.metrics import METRICS

        for e in METRICS.entries():
            typer.echo(f"{e.name:12s} {e.family:10s} {e.help}  ({e.where})")
        return 0
    data: dict[str, Any] = read_yaml(job) if job else {"job": "select"}
    where = str(job) if job else "select"
    if api_key_env is None:  # a name given on the command line is the user's own choice
        check_key_envs(data, where)
    if data.get("job", "select") != "select":
        raise DamocError(f"{job}: this is a '{data.get('job')}' job, not a 'select' job")
    if task:
        data["task"] = {**(data.get("task") or {}), "path": task}
    if candidate:
        data["candidates"] = list(candidate)
    data.setdefault("candidates", [])
    data.setdefault("task", {})
    if "path" not in data["task"]:
        raise DamocError("no task: pass --task FILE (or a built-in name) or set task.path in the job file")
    if dev_size is not None:
        _set(data, "task.dev_size", int(dev_size) if dev_size >= 1 else dev_size)
    if split:
        _set(data, "task.splits", _splits(split))
    if offline:
        from damoc.zoo.registry import set_hub_offline

        set_hub_offline()
    if no_compress:
        data.setdefault("data", {})["compress_rate"] = None
    if budget is not None:
        _set(data, "data.budget", int(budget) if budget >= 1 else budget)
    if calibrated:
        _set(data, "model.calibrated.method", calibrated)
    calib_flags = {
        "model.calibrated.prune.sparsity": calib_sparsity,
        "model.calibrated.prune.pattern": calib_pattern,
        "model.calibrated.quant.bits": calib_bits,
        "model.calibrated.alpha": calib_alpha,
    }
    if any(v is not None for v in calib_flags.values()) and not (data.get("model") or {}).get("calibrated"):
        raise DamocError("--calib-* options need --calibrated METHOD (or model.calibrated in the job file)")
    for key, value in {
        **calib_flags,
        "eval.metric": metric,
        "run.run_dir": run_dir,
        "validate.enabled": validate,
        "baselines": baselines,
        "eval.dev_rows": dev_rows,
        "task.max_rows": max_rows,
        "data.filter": filter_method,
        "data.compress_rate": compress_rate,
        "model.layer_fraction": layer_fraction,
        "model.merge": merge,
        "proxy.epochs": epochs,
        "proxy.max_steps": max_steps,
        "proxy.token_budget": token_budget,
        "eval.few_shot_k": few_shot_k,
        "adaptive.enabled": adaptive,
        "adaptive.budget_s": budget_s,
        "adaptive.max_train_tokens": max_train_tokens,
        "confidence.level": level,
        "validate.cache_dir": cache_dir,
        "validate.lr_grid": list(truth_lr) if truth_lr else None,
        "run.backend": backend,
        "run.address": address,
        "run.jobs": jobs,
        "run.device": device,
        "run.dtype": dtype,
        "eval.prompt_format": prompt_format,
        "run.gpu_ids": [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None,
        "task.fields.question": question_field,
        "task.fields.answer": answer_field,
        "task.fields.context": context_field,
        "task.fields.label": label_field,
        "data.rewrite_options.api_key_env": api_key_env,
    }.items():
        _set(data, key, value)

    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import run_select
    from damoc.select.report import failure_hint, render_table

    cfg = parse_config(SelectConfig, data, where=where)
    check_run_dir(cfg.run.run_dir)
    if cfg.validate_.enabled:
        check_cache_dir(cfg.validate_.cache_dir, "ground-truth cache")
    try:
        board = run_select(cfg, resume=resume, overwrite=overwrite, retry_failed=retry_failed)
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: the finished units are kept in {cfg.run.run_dir}; "
            "to continue, run the same command with --resume",
            err=True,
        )
        return EXIT_INTERRUPTED
    typer.echo(render_table(board))
    if hint := failure_hint(board):
        typer.echo(f"\n{hint}")
    typer.echo(f"\nreport: {Path(board.run_dir) / 'report.md'}")
    failed = [r for r in board.records if r.status != "ok"]
    if failed:
        typer.echo(
            f"{len(failed)} of {len(board.records)} units failed "
            f"({', '.join(sorted({r.candidate for r in failed}))}): exit code {EXIT_UNITS_FAILED}"
        )
        return EXIT_UNITS_FAILED
    return 0
