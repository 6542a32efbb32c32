"""Typed records of a compression run: one per example, and a summary that defines the achieved rate."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from damoc.io.tasks import Example


class SegmentTokens(NamedTuple):
    """Scorer tokens of one segment before and after compression (a JSON pair ``[original, kept]``)."""

    original: int
    kept: int


@dataclass
class Attempt:
    rate: float  # asked rate of this attempt
    info_weight: float  # the selection's share of self-information (the rest: coverage)
    achieved_rate: float  # re-tokenized kept / original scorer tokens (budget segments)
    selected_rate: float  # kept / original counted on the scorer's own tokens of the kept words
    fidelity: float | None = None


@dataclass
class CompressRecord:
    id: str
    target_rate: float
    status: str  # compressed | repaired | under_floor | retried | kept_whole | unchanged
    original_tokens: int  # scorer tokens of the budget segments
    kept_tokens: int  # scorer tokens of the compressed budget segments, re-tokenized
    achieved_rate: float  # kept_tokens / original_tokens of the output
    error: float  # |achieved_rate − target_rate|
    fidelity: float | None
    must_keep_tokens: int
    shortfall: float = 0.0  # how far the final BERTScore-F1 is under the floor (0: at or above it)
    segment_tokens: dict[str, SegmentTokens] = field(default_factory=dict)  # per segment name
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


def _mean(vals: Sequence[float]) -> float:
    return statistics.fmean(vals) if vals else 0.0


@dataclass
class CompressSummary:
    """A run in one place. ``achieved_rate`` is THE rate: the mean over examples of kept / original
    tokens of the segments the budget counts (``budget_segments``), counted with the ``tokenizer``
    on the output text, segment by segment; every report prints it through :meth:`rate_text`."""

    n_examples: int
    target_rate: float
    achieved_rate: float  # mean over examples of their achieved rate (budget segments, re-tokenized)
    mean_abs_error: float  # mean over examples of |achieved − target|
    max_abs_error: float
    budget_segments: list[str]  # the segments the rate counts
    tokenizer: str  # whose tokens are counted (the scorer's)
    segment_rates: dict[str, float]  # per segment: mean over examples with that segment of kept/original
    original_tokens: int  # of the budget segments, all examples
    kept_tokens: int
    tokens_saved: int
    fidelity_floor: float | None
    on_floor: str
    n_compressed: int
    n_repaired: int  # brought over the floor at the same rate by re-selecting the words
    n_under_floor: int  # on_floor keep_rate: kept at the rate under the floor
    n_retried: int  # on_floor back_off: over the floor at a milder rate
    n_kept_whole: int
    mean_shortfall: float  # mean over examples of max(0, floor − BERTScore-F1)
    fidelity: dict[str, float]  # distribution of the final BERTScore-F1 (empty when not checked)
    compress_tokens: int  # scorer tokens of the segments the compressor may shorten (context, question)
    scored_tokens: int  # tokens the scorer LM scored (max_scored_tokens bounds it per example)
    wall_s: float
    tokens_per_s: float  # compress_tokens / wall_s (scoring + selection + fidelity)

    @classmethod
    def from_records(
        cls,
        records: Sequence[CompressRecord],
        target: float,
        *,
        budget_segments: list[str],
        tokenizer: str,
        fidelity_floor: float | None,
        on_floor: str,
        compress_tokens: int,
        scored_tokens: int,
        wall_s: float,
    ) -> CompressSummary:
        n = len(records)
        orig = sum(r.original_tokens for r in records)
        kept = sum(r.kept_tokens for r in records)
        errors = [r.error for r in records]
        names = list(records[0].segment_tokens) if records else []
        seg_rates = {
            nm: _mean(
                [
                    r.segment_tokens[nm].kept / r.segment_tokens[nm].original
                    for r in records
                    if r.segment_tokens[nm].original
                ]
            )
            for nm in names
            if any(r.segment_tokens[nm].original for r in records)
        }
        return cls(
            n_examples=n,
            target_rate=target,
            achieved_rate=_mean([r.achieved_rate for r in records]),
            mean_abs_error=_mean(errors),
            max_abs_error=max(errors) if n else 0.0,
            budget_segments=budget_segments,
            tokenizer=tokenizer,
            segment_rates=seg_rates,
            original_tokens=orig,
            kept_tokens=kept,
            tokens_saved=orig - kept,
            fidelity_floor=fidelity_floor,
            on_floor=on_floor,
            n_compressed=sum(r.status == "compressed" for r in records),
            n_repaired=sum(r.status == "repaired" for r in records),
            n_under_floor=sum(r.status == "under_floor" for r in records),
            n_retried=sum(r.status == "retried" for r in records),
            n_kept_whole=sum(r.status == "kept_whole" for r in records),
            mean_shortfall=_mean([r.shortfall for r in records]),
            fidelity=_quantiles([r.fidelity for r in records if r.fidelity is not None]),
            compress_tokens=compress_tokens,
            scored_tokens=scored_tokens,
            wall_s=wall_s,
            tokens_per_s=compress_tokens / wall_s if wall_s > 0 else 0.0,
        )

    def rate_text(self) -> str:
        return rate_text(asdict(self))

    def fidelity_text(self) -> str:
        """BERTScore-F1 distribution and what the floor did (empty when fidelity was not checked)."""
        f = self.fidelity
        if not f:
            return ""
        return (
            f"BERTScore-F1 mean {f['mean']:.3f} (min {f['min']:.3f}, median {f['p50']:.3f}) vs floor "
            f"{self.fidelity_floor:g}: {self.n_compressed} over it, {self.n_repaired} re-selected over it, "
            f"{self.n_under_floor} under it at the rate (mean shortfall {self.mean_shortfall:.3f}), "
            f"{self.n_retried} at a milder rate, {self.n_kept_whole} kept whole (on_floor {self.on_floor})"
        )


def rate_text(summary: Mapping[str, Any]) -> str:
    """The achieved rate as every report prints it, from a summary (or its JSON form)."""
    s = summary
    segs = ", ".join(f"{k} {v:.3f}" for k, v in s["segment_rates"].items())
    return (
        f"achieved rate {s['achieved_rate']:.3f} (target {s['target_rate']:g}, mean |error| "
        f"{s['mean_abs_error']:.3f}, max {s['max_abs_error']:.3f}; {s['tokenizer']} tokens of "
        f"{'+'.join(s['budget_segments'])}, mean over {s['n_examples']} examples); per segment: {segs}; "
        f"{s['tokens_saved']} of {s['original_tokens']} tokens saved"
    )


@dataclass
class CompressResult:
    examples: list[Example]
    records: list[CompressRecord]
    summary: CompressSummary
