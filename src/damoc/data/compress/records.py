"""Typed records of a compression run: one per example, and a summary."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from damoc.io.tasks import Example


@dataclass
class Attempt:
    rate: float  # asked rate of this attempt
    achieved_rate: float  # re-tokenized kept / original scorer tokens (budget segments)
    selected_rate: float  # kept / original counted on the scorer's own tokens of the kept words
    fidelity: float | None = None


@dataclass
class CompressRecord:
    id: str
    target_rate: float
    status: str  # compressed | retried | kept_whole | unchanged
    original_tokens: int  # scorer tokens of the budget segments
    kept_tokens: int  # scorer tokens of the compressed budget segments, re-tokenized
    achieved_rate: float
    error: float  # |achieved rate of the first attempt − target rate|
    fidelity: float | None
    must_keep_tokens: int
    segment_tokens: dict[str, list[int]] = field(default_factory=dict)  # name: [original, kept]
    attempts: list[Attempt] = field(default_factory=list)


def _quantiles(vals: Sequence[float]) -> dict[str, float]:
    if not vals:
        return {}
    s = sorted(vals)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]

    return {
        "min": s[0],
        "p10": q(0.1),
        "p50": q(0.5),
        "p90": q(0.9),
        "max": s[-1],
        "mean": statistics.fmean(s),
    }


@dataclass
class CompressSummary:
    n_examples: int
    target_rate: float
    mean_rate_first_attempt: float  # what the controller achieved when asked for the target
    mean_abs_error: float  # mean over examples of |achieved − target| (first attempt)
    max_abs_error: float
    final_rate: float  # kept/original over all examples after fidelity back-off
    original_tokens: int
    kept_tokens: int
    tokens_saved: int
    n_compressed: int
    n_retried: int
    n_kept_whole: int
    fidelity: dict[str, float]  # distribution of the final BERTScore-F1 (empty when not checked)
    compress_tokens: int  # scorer tokens of the segments the compressor shortened (context, question)
    wall_s: float
    tokens_per_s: float  # compress_tokens / wall_s (scoring + selection + fidelity)

    @classmethod
    def from_records(
        cls, records: Sequence[CompressRecord], target: float, compress_tokens: int, wall_s: float
    ) -> CompressSummary:
        n = len(records)
        first = [r.attempts[0].achieved_rate if r.attempts else r.achieved_rate for r in records]
        orig = sum(r.original_tokens for r in records)
        kept = sum(r.kept_tokens for r in records)
        errors = [r.error for r in records]
        return cls(
            n_examples=n,
            target_rate=target,
            mean_rate_first_attempt=statistics.fmean(first) if n else 0.0,
            mean_abs_error=statistics.fmean(errors) if n else 0.0,
            max_abs_error=max(errors) if n else 0.0,
            final_rate=kept / orig if orig else 1.0,
            original_tokens=orig,
            kept_tokens=kept,
            tokens_saved=orig - kept,
            n_compressed=sum(r.status == "compressed" for r in records),
            n_retried=sum(r.status == "retried" for r in records),
            n_kept_whole=sum(r.status == "kept_whole" for r in records),
            fidelity=_quantiles([r.fidelity for r in records if r.fidelity is not None]),
            compress_tokens=compress_tokens,
            wall_s=wall_s,
            tokens_per_s=compress_tokens / wall_s if wall_s > 0 else 0.0,
        )


@dataclass
class CompressResult:
    examples: list[Example]
    records: list[CompressRecord]
    summary: CompressSummary
