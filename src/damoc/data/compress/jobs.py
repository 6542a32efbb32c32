"""File-level jobs: read a task, compress or rewrite it, write the JSONL and a report beside it.

Everything is checked before any model is loaded, and both files are written only at the end, each
atomically, so bad input leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from damoc.data.compress.compressor import compress_examples
from damoc.data.compress.config import CompressJob, RewriteJob
from damoc.data.compress.rewrite import build_rewriter, rewrite_examples
from damoc.errors import DamocError
from damoc.io.files import write_json_atomic, write_jsonl_atomic
from damoc.io.tasks import Example, FieldMap, load_examples


def report_path(out: str | Path) -> Path:
    """``OUT.jsonl`` → ``OUT.report.json`` (beside the output)."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".report.json")


def check_out(out: str | Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.suffix != ".jsonl":
        raise DamocError(f"output {out} must be a .jsonl file")
    if out.is_dir():
        raise DamocError(f"output {out} is a directory")
    if out.exists() and not overwrite:
        raise DamocError(f"output {out} exists (pass --overwrite to replace it)")
    return out


def _load(path: str, fields: FieldMap, limit: int | None = None) -> list[Example]:
    examples = load_examples(path, fields)
    return examples[:limit] if limit else examples


def _write_result(out, job, result) -> None:
    """The report (job, summary, per-example records) beside the output rows, both written atomically."""
    report = {
        "job": job.model_dump(mode="json"),
        "summary": asdict(result.summary),
        "records": [asdict(r) for r in result.records],
    }
    write_json_atomic(report_path(out), report)
    write_jsonl_atomic(out, [e.to_row() for e in result.examples])


def run_compress_job(job: CompressJob, model=None, tok=None, overwrite: bool = False, fidelity_fn=None):
    """Compress ``job.task`` into ``job.out`` (+ ``.report.json``); returns the CompressResult."""
    out = check_out(job.out, overwrite)
    examples = _load(job.task, job.fields, job.limit)
    result = compress_examples(examples, job.compress, model, tok, fidelity_fn)
    _write_result(out, job, result)
    return result


def pair_examples(compressed: list[Example], original: list[Example], where: str) -> list[Example]:
    """The original example of each compressed one, matched by id."""
    by_id = {e.id: e for e in original}
    missing = [e.id for e in compressed if e.id not in by_id]
    if missing:
        raise DamocError(
            f"{where}: {len(missing)} compressed ids are not in the original task (first: '{missing[0]}')"
        )
    return [by_id[e.id] for e in compressed]


def run_rewrite_job(job: RewriteJob, rewriter=None, fidelity_fn=None, overwrite: bool = False):
    """Rewrite ``job.compressed`` against ``job.original`` into ``job.out``; returns the RewriteResult."""
    out = check_out(job.out, overwrite)
    compressed = load_examples(job.compressed)
    original = pair_examples(compressed, load_examples(job.original, job.fields), job.original)
    rewriter = rewriter or build_rewriter(job.rewrite)
    result = rewrite_examples(compressed, original, job.rewrite, rewriter, fidelity_fn)
    _write_result(out, job, result)
    return result
