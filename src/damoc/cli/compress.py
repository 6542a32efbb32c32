"""`damoc compress` and `damoc rewrite`: shorter training examples (docs/token_compression.md, docs/rewriting.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from damoc.cli.apps import app
from damoc.cli.options import DEVICE_OPT, DTYPE_OPT, OFFLINE_OPT, use_hardware
from damoc.io.outputs import check_output_file
from damoc.io.redact import redact

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.

_FIELDS = "Field mapping"


def _fields(id_field, question_field, context_field, answer_field, label_field) -> dict:
    return {
        "id": id_field or None,
        "question": question_field,
        "context": context_field or None,
        "answer": answer_field,
        "label": label_field or None,
    }


def _check_outputs(out: Path, overwrite: bool) -> None:
    """The examples file and the report beside it, before any work."""
    from damoc.data.compress.jobs import report_path

    check_output_file(out, overwrite)
    check_output_file(report_path(out), overwrite, "report")


@app.command("compress")
def compress_cmd(
    task: str = typer.Argument(..., help="Task file (.jsonl/.json/.csv), datasets dir, or pubmedqa/finance."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Compressed examples (.jsonl); a .report.json goes beside it."
    ),
    rate: float = typer.Option(
        0.5, "--rate", "-r", help="Kept/original scorer tokens per example, in (0, 1]."
    ),
    scorer: str = typer.Option(
        "smollm2-135m", "--scorer", help="Causal LM that scores tokens (dir or zoo name)."
    ),
    budget: str = typer.Option(
        "prompt",
        "--budget",
        help="Segments the rate counts: 'prompt' context+question (the answer stays whole and "
        "outside the rate), 'example' context+question+answer.",
    ),
    context_rate: float | None = typer.Option(
        None, "--context-rate", help="Preferred context rate (default: what the budget leaves)."
    ),
    question_rate: float = typer.Option(0.9, "--question-rate", help="Preferred question rate."),
    answer_rate: float = typer.Option(
        1.0, "--answer-rate", help="Preferred answer rate (1.0: never touched)."
    ),
    keep: list[str] = typer.Option([], "--keep", help="Regex whose matches are never dropped (repeatable)."),
    chunk_tokens: int = typer.Option(
        128, "--chunk-tokens", help="Tokens per chunk re-scored on the compressed prefix."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Examples per forward pass (default: 1 on CPU, 8 on a GPU)."
    ),
    fidelity_floor: float = typer.Option(
        0.85,
        "--fidelity-floor",
        help="BERTScore-F1 floor; an example under it is re-selected at the same rate, then --on-floor.",
    ),
    on_floor: str = typer.Option(
        "keep_rate",
        "--on-floor",
        help="An example still under the floor: keep_rate (keep the rate, report the shortfall), "
        "back_off (retry at milder rates, then keep whole), keep_whole.",
    ),
    info_weight: float = typer.Option(
        0.0,
        "--info-weight",
        help="Share of the scorer's self-information in a word's value (the rest: how much of the "
        "original it covers under the BERTScore encoder); 1: LLMLingua's criterion, 0: no scorer forward.",
    ),
    max_scored_tokens: int | None = typer.Option(
        2048,
        "--max-scored-tokens",
        help="Scorer-scored tokens per example; words after them are chosen by coverage alone "
        "(bounds the time of very long contexts). 0: none.",
    ),
    no_fidelity: bool = typer.Option(False, "--no-fidelity", help="Skip the BERTScore check."),
    fidelity_encoder: str | None = typer.Option(
        None,
        "--fidelity-encoder",
        help="Local encoder dir for BERTScore (default: all-MiniLM-L6-v2 from PyPI).",
    ),
    limit: int | None = typer.Option(None, "--limit", help="Compress only the first N rows."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    id_field: str = typer.Option(
        "id", "--id-field", help="Column holding the id ('' for row numbers).", rich_help_panel=_FIELDS
    ),
    question_field: str = typer.Option("question", "--question-field", rich_help_panel=_FIELDS),
    context_field: str = typer.Option(
        "context", "--context-field", help="'' for none.", rich_help_panel=_FIELDS
    ),
    answer_field: str = typer.Option("answer", "--answer-field", rich_help_panel=_FIELDS),
    label_field: str = typer.Option("label", "--label-field", help="'' for none.", rich_help_panel=_FIELDS),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Compress a task's examples to a token rate: keep the words worth most per token, drop the rest.

    Each example lands on the rate (kept/original scorer tokens of the segments --budget names). The context is compressed hardest, the question lightly, the answer not at all; gold answer spans and --keep matches are never dropped. A word's value mixes its self-information under the scorer with how much of the original it covers under the BERTScore encoder. An example whose BERTScore-F1 vs the original falls under the floor is re-selected at the same rate with more weight on coverage; one still under it follows --on-floor. The achieved rate, per-segment rates and the fidelity distribution are printed and written to OUT.report.json.
    """
    from damoc.config import parse_config
    from damoc.data.compress.config import CompressJob
    from damoc.data.compress.jobs import run_compress_job

    job = parse_config(
        CompressJob,
        {
            "task": task,
            "out": str(out),
            "limit": limit,
            "fields": _fields(id_field, question_field, context_field, answer_field, label_field),
            "compress": {
                "rate": rate,
                "scorer": scorer,
                "budget": budget,
                "context_rate": context_rate,
                "question_rate": question_rate,
                "answer_rate": answer_rate,
                "keep_patterns": keep,
                "chunk_tokens": chunk_tokens,
                "batch_size": batch_size,
                "fidelity_floor": None if no_fidelity else fidelity_floor,
                "fidelity_encoder": fidelity_encoder,
                "on_floor": on_floor,
                "info_weight": info_weight,
                "max_scored_tokens": max_scored_tokens,
            },
        },
    )
    use_hardware(device, dtype, offline, job)
    _check_outputs(out, overwrite)
    from damoc.model.arch import check_model

    check_model(scorer, "--scorer")
    result = run_compress_job(job, overwrite=overwrite)
    s = result.summary
    typer.echo(f"{s.n_examples} examples: {s.rate_text()}")
    if s.fidelity:
        typer.echo(s.fidelity_text())
    typer.echo(f"wrote {out}")


@app.command("rewrite")
def rewrite_cmd(
    compressed: str = typer.Argument(..., help="Compressed examples (.jsonl from `damoc compress`)."),
    original: str = typer.Option(..., "--original", help="The original task (matched by id)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Rewritten examples (.jsonl); a .report.json goes beside it."
    ),
    rewriter: str | None = typer.Option(None, "--rewriter", help="Local chat model (dir or zoo name)."),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="OpenAI-compatible base URL instead of a local model."
    ),
    endpoint_model: str = typer.Option(
        "default", "--endpoint-model", help="Model name sent to the endpoint."
    ),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY",
        "--api-key-env",
        help="Environment variable whose value is sent to the endpoint as its key (a user:password in the "
        "URL is sent when it is unset); neither appears in any message or report.",
    ),
    max_rounds: int = typer.Option(
        3, "--max-rounds", help="Rewrites per text before keeping the compressed one."
    ),
    tau: float = typer.Option(0.85, "--tau", help="BERTScore-F1 floor of a rewrite vs the original."),
    field: list[str] = typer.Option(
        ["context"], "--field", help="Which fields to rewrite: context, question."
    ),
    max_new_tokens: int = typer.Option(384, "--max-new-tokens"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    id_field: str = typer.Option("id", "--id-field", rich_help_panel=_FIELDS),
    question_field: str = typer.Option("question", "--question-field", rich_help_panel=_FIELDS),
    context_field: str = typer.Option("context", "--context-field", rich_help_panel=_FIELDS),
    answer_field: str = typer.Option("answer", "--answer-field", rich_help_panel=_FIELDS),
    label_field: str = typer.Option("label", "--label-field", rich_help_panel=_FIELDS),
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    offline: bool = OFFLINE_OPT,
) -> None:
    """Rewrite compressed examples into short fluent text, with feedback on what was lost.

    Each rewrite must keep BERTScore-F1 vs the original >= tau and, for extractive examples, the answer string; otherwise the rewriter is asked again with the lost key terms named, up to --max-rounds, and then the compressed text is kept.
    """
    from damoc.config import parse_config
    from damoc.data.compress.config import RewriteJob
    from damoc.data.compress.jobs import run_rewrite_job

    job = parse_config(
        RewriteJob,
        {
            "compressed": compressed,
            "original": original,
            "out": str(out),
            "fields": _fields(id_field, question_field, context_field, answer_field, label_field),
            "rewrite": {
                "rewriter": rewriter,
                "endpoint": endpoint,
                "endpoint_model": endpoint_model,
                "api_key_env": api_key_env,
                "max_rounds": max_rounds,
                "tau": tau,
                "fields": field,
                "max_new_tokens": max_new_tokens,
            },
        },
    )
    use_hardware(device, dtype, offline, job)
    _check_outputs(out, overwrite)
    if rewriter is not None:
        from damoc.model.arch import check_model

        check_model(rewriter, "--rewriter")
    built = None
    if job.rewrite.endpoint:  # built from the real URL; the job written to the report has it masked
        from damoc.data.compress.rewrite import build_rewriter

        built = build_rewriter(job.rewrite)
        job = job.model_copy(
            update={"rewrite": job.rewrite.model_copy(update={"endpoint": redact(job.rewrite.endpoint)})}
        )
    result = run_rewrite_job(job, rewriter=built, overwrite=overwrite)
    s = result.summary
    typer.echo(
        f"{s.n_items} texts: {s.n_passed} rewritten ({s.n_passed_first_round} in round 1), "
        f"{s.n_fallback} kept compressed; mean rounds {s.mean_rounds:.2f}"
    )
    typer.echo(f"wrote {out}")
