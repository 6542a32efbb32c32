"""``damoc filter``: keep a budget of a task's rows with one of twelve data filters, or compare them."""

from __future__ import annotations

from pathlib import Path

import typer

from damoc.cli.apps import app
from damoc.cli.options import DEVICE_OPT, DTYPE_OPT, OFFLINE_OPT, use_hardware
from damoc.errors import DamocError
from damoc.io.outputs import check_output_dir, check_output_file

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.


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
        None,
        "--compare",
        help="Comma-separated filters to run on the same pool: time and overlap; with --candidates, the "
        "proxy ranking of the candidates on each filter's subset against the whole training split's.",
    ),
    candidates: str = typer.Option(
        None,
        "--candidates",
        help="With --compare: comma-separated models (zoo names or directories) to rank on each subset.",
    ),
    truth: Path = typer.Option(
        None,
        "--truth",
        help="With --candidates: true scores ({'scores': {...}, 'higher_is_better': ...}), a validated "
        "leaderboard.json, or a directory of full fine-tune records.",
    ),
    select_job: Path = typer.Option(
        None,
        "--select-job",
        help="With --candidates: a 'select' job whose proxy, model, eval and run settings the sweeps use "
        "(default: every layer kept, 3 LoRA epochs, no token compression).",
    ),
    dev_rows: int = typer.Option(
        None, "--dev-rows", help="With --candidates: dev rows scored (default: all)."
    ),
    threads: int = typer.Option(None, "--threads", help="With --candidates: torch threads per worker."),
    resume: bool = typer.Option(False, "--resume", help="With --candidates: continue a comparison's --out."),
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
    fields = {
        "id": id_field or None,
        "question": question_field,
        "answer": answer_field,
        "context": context_field or None,
        "label": label_field or None,
    }
    if candidates or truth or select_job:
        if not candidates or not compare:
            raise DamocError("--truth and --select-job go with --compare and --candidates")
        try:
            _ranking_compare(
                task, compare, candidates, budget, out, seed, fields, dev_size, max_rows, dev_rows, threads,
                _parse_options(option), truth, select_job, resume,
            )  # fmt: skip
        except KeyboardInterrupt:  # finished sweeps are kept in --out; say how to continue
            typer.echo(
                "interrupted: finished sweeps are kept; run the same command with --resume to continue",
                err=True,
            )
            raise typer.Exit(130) from None
        return
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
            "fields": fields,
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
        typer.echo("(overlap = Jaccard of kept rows; add --candidates for the ranking agreement)")
    for p in res.written or []:
        typer.echo(f"wrote {p}")


def _ranking_compare(
    task: str,
    compare: str,
    candidates: str,
    budget: float,
    out: Path | None,
    seed: int,
    fields: dict,
    dev_size: float,
    max_rows: int | None,
    dev_rows: int | None,
    threads: int | None,
    options: dict,
    truth: Path | None,
    select_job: Path | None,
    resume: bool,
) -> None:
    """``--compare`` with ``--candidates``: one proxy sweep per filter against the whole-split sweep."""
    from damoc.config import load_job, parse_config
    from damoc.select.config import SelectConfig
    from damoc.select.filter_compare import WHOLE, FilterRankingConfig, run_filter_ranking

    if out is None:
        raise DamocError("--out DIR is needed to keep the comparison's runs")
    cands = [c.strip() for c in candidates.split(",") if c.strip()]
    task_settings = {
        "path": task,
        "fields": fields,
        "dev_size": int(dev_size) if dev_size >= 1 else dev_size,
        "max_rows": max_rows,
        "seed": seed,
    }
    if select_job is not None:
        base = load_job(select_job)
        if not isinstance(base, SelectConfig):
            raise DamocError(f"{select_job}: a '{base.job}' job; --select-job takes a 'select' job")
        # the job's own settings, credentials included (dump() masks them for files, not for use)
        data = base.model_dump(mode="json", by_alias=True)
        data.update(task=task_settings, candidates=cands, seed=seed)
    else:
        data = {
            "job": "select",
            "task": task_settings,
            "candidates": cands,
            "data": {"compress_rate": None},
            "model": {"layer_fraction": 0.0},
            "proxy": {"method": "lora", "epochs": 3.0},
            "eval": {"dev_rows": dev_rows},
            "seed": seed,
        }
    if dev_rows is not None:
        data.setdefault("eval", {})["dev_rows"] = dev_rows
    if threads is not None:
        data.setdefault("run", {})["threads"] = threads
    cfg = parse_config(
        FilterRankingConfig,
        {
            "select": data,
            "filters": [m.strip() for m in compare.split(",") if m.strip()],
            "budget": budget,
            "filter_options": options,
            "truth": str(truth) if truth else None,
            "out": str(out),
        },
        where="filter --compare",
    )
    rep = run_filter_ranking(cfg, resume=resume)
    whole = rep.row(WHOLE)
    typer.echo(
        f"reference: all {whole.rows} training rows -> {' > '.join(whole.ranking)} ({whole.cost_s:.0f} s)"
    )
    for r in rep.rows:
        if r.method == WHOLE:
            continue
        if r.error and not r.scores:
            typer.echo(f"{r.method:16} failed: {r.error}")
            continue
        tau = r.vs_whole.kendall if r.vs_whole else None
        hit = "-" if r.vs_whole is None else ("hit" if r.vs_whole.top1_hit else "miss")
        t = (
            ""
            if r.vs_truth is None
            else f"  truth tau {r.vs_truth.kendall}  top-1 {'hit' if r.vs_truth.top1_hit else 'miss'}"
        )
        typer.echo(f"{r.method:16} {' > '.join(r.ranking):50} tau {tau}  top-1 {hit}  {r.cost_s:.0f} s{t}")
    typer.echo(f"wrote {out}/ranking.json, ranking.md, ranking.png")
