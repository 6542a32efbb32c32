"""How sure a ranking is: paired-bootstrap intervals between candidates scored on the same dev rows.

A unit record keeps its per-row dev scores (``UnitRecord.per_example``, in dev-row order). From them and the
dev rows' answer bytes this module rebuilds what the metric pools:

- ``answer_bpb`` is a ratio of sums: per-row answer bits (per-row bits/byte × the row's answer bytes) over
  answer bytes, so a bootstrap draw recomputes the pooled score exactly;
- label accuracy, exact match, F1 and ROUGE-L are plain means of the per-row values;
- ``answer_nll`` and ``perplexity`` pool rows by their answer tokens, which records do not keep: their
  intervals are those of the per-row mean, and say so (``approximate``).

Then every adjacent pair of a ranking gets :func:`damoc.evaluate.paired.paired_difference`, oriented so
that the gap is how much better the higher-ranked candidate scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from damoc.evaluate.metrics import get_metric
from damoc.evaluate.paired import PairedDifference, paired_difference, rows_to_separate, seeds_to_separate
from damoc.io.tasks import Example
from damoc.select.config import ConfidenceSettings
from damoc.select.records import Method, PairInterval, UnitRecord

APPROXIMATE = ("answer_nll", "perplexity")  # pooled by tokens: the interval is the per-row mean's


def answer_bytes(dev: Sequence[Example]) -> list[int]:
    """Each dev row's answer length in UTF-8 bytes, as bits-per-byte scoring counts it."""
    return [len(e.answer.strip().encode()) for e in dev]


def row_values(rec: UnitRecord, dev_bytes: Sequence[int]) -> tuple[list[float], list[int] | None] | None:
    """(per-row values, per-row weights or None) of a successful record on the first ``rec.n_dev`` dev rows.

    None when the record has no per-row scores for its dev rows (a failed unit, an old summary)."""
    per = rec.per_example
    if rec.status != "ok" or not per or len(per) != rec.n_dev or len(per) > len(dev_bytes):
        return None
    if rec.metric == "answer_bpb":
        nbytes = [int(b) for b in dev_bytes[: len(per)]]
        return [p * max(1, b) for p, b in zip(per, nbytes, strict=True)], nbytes
    return [float(p) for p in per], None


def compare(
    a: Sequence[UnitRecord],
    b: Sequence[UnitRecord],
    dev_bytes: Sequence[int],
    settings: ConfidenceSettings,
    level: float | None = None,
) -> PairedDifference | None:
    """score(a) - score(b), paired over the dev rows (and over seeds: ``a[i]`` and ``b[i]`` are seed i's
    records). None when a record lacks per-row scores or the two were scored on different rows."""
    if not a or len(a) != len(b):
        return None
    va, vb, weights = [], [], None
    for ra, rb in zip(a, b, strict=True):
        xa, xb = row_values(ra, dev_bytes), row_values(rb, dev_bytes)
        if xa is None or xb is None or len(xa[0]) != len(xb[0]) or (va and len(xa[0]) != len(va[0])):
            return None
        va.append(xa[0])
        vb.append(xb[0])
        weights = xa[1]
    hib = get_metric(a[0].metric).higher_is_better
    return paired_difference(
        va,
        vb,
        weights,
        higher_is_better=hib,
        n_boot=settings.n_boot,
        level=settings.level if level is None else level,
        seed=settings.seed,
    )


def pair_interval(
    method: Method,
    ahead: Sequence[UnitRecord],
    behind: Sequence[UnitRecord],
    dev_bytes: Sequence[int],
    settings: ConfidenceSettings,
    level: float | None = None,
    round_index: int | None = None,
) -> PairInterval | None:
    """The interval of how much better ``ahead`` scores than ``behind`` (their records, one per seed)."""
    d = compare(ahead, behind, dev_bytes, settings, level)
    if d is None:
        return None
    gap, lo, hi = (d.diff, d.ci_low, d.ci_high) if d.higher_is_better else (-d.diff, -d.ci_high, -d.ci_low)
    tied = max(0.0, 1.0 - d.share_a_better - d.share_b_better)
    return PairInterval(
        method=method,
        ahead=ahead[0].candidate,
        behind=behind[0].candidate,
        gap=gap,
        ci_low=lo,
        ci_high=hi,
        p_order=d.share_a_better + 0.5 * tied,
        level=d.level,
        n_rows=d.n_rows,
        n_seeds=d.n_seeds,
        round=round_index,
        rows_needed=rows_to_separate(d),
        seeds_needed=seeds_to_separate(d),
        approximate=ahead[0].metric in APPROXIMATE,
    )


def adjacent_pairs(
    method: Method,
    order: Sequence[str],
    records: Mapping[str, Sequence[UnitRecord]],
    dev_bytes: Sequence[int],
    settings: ConfidenceSettings,
) -> list[PairInterval]:
    """An interval for every adjacent pair of ``order`` (best first), from each candidate's records (one
    per seed); pairs without per-row scores are left out."""
    out = []
    for a, b in zip(order, order[1:], strict=False):
        p = pair_interval(method, records[a], records[b], dev_bytes, settings)
        if p is not None:
            out.append(p)
    return out


__all__ = ["adjacent_pairs", "answer_bytes", "compare", "pair_interval", "row_values"]
