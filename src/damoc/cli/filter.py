"""``damoc filter``: keep a budget of a task's rows with one of twelve data filters, or compare them."""

from __future__ import annotations

from pathlib import Path

import typer

from damoc.cli.apps import app
from damoc.cli.options import DEVICE_OPT, DTYPE_OPT, OFFLINE_OPT, use_hardware
from damoc.errors import DamocError


def _parse_options(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DamocError(f"--option takes KEY=VALUE, got '{item}'")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise DamocError(f"--option {key}: cannot read the value '{value}'") from None
    return out


def _check_outputs(cfg) -> None:
    """The subset and its scores (one method), or the comparison directory, before any work."""
    from damoc.data.filters.job import scores_path
    from damoc.io.outputs import check_output_dir, check_output_file

    if cfg.out is None:
        return
    if cfg.compare:
        check_output_dir(cfg.out, cfg.overwrite)
    elif cfg.method:
        check_output_file(cfg.out, cfg.overwrite)
        check_output_file(scores_path(cfg.out), cfg.overwrite, "scores file")


def _list_filters() -> None:
    from damoc.data.filters import FILTERS, filter_names

    for name in filter_names():
        entry = FILTERS.entry(name)
        typer.echo(f"{entry.obj.code:3} {name:16} {entry.family:13} {entry.help}  ({entry.where})")


@app.command("filter")
def filter_cmd(
    task: str = typer.Argument(
        None, help="Task file (JSONL/CSV/JSON), a datasets directory, or pubmedqa/finance."
    ),
    list_: bool = typer.Option(
        False, "--list", help="List the filters (id, name, family, what it does) and exit."
    ),
    method: str = typer.Option(None, "--method", "-m", help="The filter to run (see --list)."),
    compare: str = typer.Option(
        None, "--compare", help="Comma-separated filters to run on the same pool: time and overlap."
    ),
    budget: float = typer.Option(
        0.1, "--budget", "-b", help="Rows to keep: a fraction in (0, 1) or a row count."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="SUBSET.jsonl (scores go to SUBSET.scores.json); with --compare a directory.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the dev split and every random choice."),
    question_field: str = typer.Option("question", help="Column holding the question."),
    answer_field: str = typer.Option("answer", help="Column holding the answer."),
    context_field: str = typer.Option("context", help="Column holding the context ('' for none)."),
    label_field: str = typer.Option(
        "label", help="Column holding a class label, for stratified random ('' for none)."
    ),
    id_field: str = typer.Option("id", help="Column holding a row id ('' to number the rows)."),
    dev_size: float = typer.Option(
        0.2, help="Rows held out as dev (DSIR's default target); 0 filters every row."
    ),
    max_rows: int = typer.Option(None, help="Read at most this many rows (shuffled with the seed)."),
    target: Path = typer.Option(None, help="DSIR target rows (a task file); default the held-out dev rows."),
    embedder: str = typer.Option("auto", help="auto (MiniLM when installed), minilm or tfidf."),
    embed_text: str = typer.Option(
        "qac",
        help="Text embedded/hashed: qac (question, answer, context), question, prompt, answer or text.",
    ),
    reference_model: str = typer.Option(
        "smollm2-135m", help="LM for perplexity and IFD: zoo name or model directory."
    ),
    judge_model: str = typer.Option(None, help="Instruct LM for llm-judge (default: the reference model)."),
    option: list[str] = typer.Option(
        [], "--option", "-O", help="A method option KEY=VALUE (repeatable), e.g. -O threshold=0.85."
    ),
    overwrite: bool = typer.Option(False, help="Replace existing outputs."),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Keep a budget of a task's rows with a data filter; write the subset and every row's score.

    Distribution filters (random, kcenter, kmeans, semdedup, dsir) spread the subset over the data;
    quality filters (perplexity, ifd, heuristics, llm-judge) keep the best rows; hybrids (cluster-rank,
    deita, quality-kcenter) do both. The pool is the task's train split (--dev-size rows are held out,
    as `damoc select` does).
    """
    if list_:
        _list_filters()
        return
    if not task:
        raise DamocError("give a TASK (file or built-in name), or --list")
    from damoc.config import parse_config
    from damoc.data.filters.config import FilterJob
    from damoc.data.filters.job import run_filter_job

    cfg = parse_config(
        FilterJob,
        {
            "job": "filter",
            "task": task,
            "method": method,
            "compare": [m.strip() for m in compare.split(",") if m.strip()] if compare else None,
            "budget": budget,
            "out": out,
            "seed": seed,
            "fields": {
                "id": id_field or None,
                "question": question_field,
                "answer": answer_field,
                "context": context_field or None,
                "label": label_field or None,
            },
            "dev_size": dev_size,
            "max_rows": max_rows,
            "target": str(target) if target else None,
            "embedder": embedder,
            "text_view": embed_text,
            "reference_model": reference_model,
            "judge_model": judge_model,
            "options": _parse_options(option),
            "overwrite": overwrite,
        },
        where="filter",
    )
    use_hardware(device, dtype, offline, cfg)
    _check_outputs(cfg)
    from damoc.model.arch import check_model

    check_model(cfg.reference_model, "--reference-model")
    if cfg.judge_model:
        check_model(cfg.judge_model, "--judge-model")
    res = run_filter_job(cfg)
    typer.echo(f"pool: {res.pool} rows ({res.dev} held out as dev); budget: {res.budget} rows")
    if res.selection is not None:
        info = ", ".join(f"{k}={v}" for k, v in res.selection.info.items() if not isinstance(v, list | dict))
        typer.echo(
            f"{cfg.method}: kept {len(res.selection.indices)} rows in {res.wall_s:.2f}s"
            + (f" ({info})" if info else "")
        )
    if res.comparison is not None:
        comp = res.comparison
        ok = [r for r in comp.runs if r.error is None]
        typer.echo(f"{'method':16} {'family':13} {'time_s':>8} " + " ".join(f"{r.method[:8]:>8}" for r in ok))
        for r in comp.runs:
            if r.error:
                typer.echo(f"{r.method:16} {r.family:13} failed: {r.error}")
                continue
            cells = " ".join(
                f"{(1.0 if o.method == r.method else comp.overlap[r.method][o.method]):8.3f}" for o in ok
            )
            typer.echo(f"{r.method:16} {r.family:13} {r.wall_s:8.2f} {cells}")
        typer.echo("(overlap = Jaccard of kept rows; ranking agreement is computed by `damoc select`)")
    for p in res.written or []:
        typer.echo(f"wrote {p}")
