"""The budget controller: how many tokens each segment and each chunk keeps, and which words.

Pure functions on numbers (no model, no text), so they have known answers:
- :func:`split_budget` turns an overall target into per-segment kept counts;
- :func:`chunk_budget` spreads a segment's count over its chunks, carrying rounding forward;
- :func:`select_units` keeps the most informative words of a chunk within its token budget;
- :func:`closest_step` picks the one word whose size best closes what is left of a whole budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def split_budget(
    sizes: Sequence[int],
    preferred: Sequence[float | None],
    lower: Sequence[int],
    target: int,
) -> list[int]:
    """Kept tokens per segment, summing to ``target`` where the bounds allow.

    ``preferred[s]`` is a segment's preferred rate (``None``: it takes whatever the others leave).
    ``lower[s]`` is its floor (must-keep tokens, a minimum rate, or its whole size when locked); the
    ceiling is its size. The gap between the preferred split and ``target`` is settled segment by
    segment, the free segment first, then by ascending preferred rate (most compressible first).
    """
    n = len(sizes)
    lower = [min(max(0, lo), sz) for lo, sz in zip(lower, sizes, strict=True)]
    kept = [0] * n
    free = [i for i in range(n) if preferred[i] is None]
    for i in range(n):
        if preferred[i] is not None:
            kept[i] = min(max(round(preferred[i] * sizes[i]), lower[i]), sizes[i])
    rest = target - sum(kept)
    for i in free:
        kept[i] = min(max(rest, lower[i]), sizes[i])
        rest -= kept[i]
    order = free + sorted((i for i in range(n) if preferred[i] is not None), key=lambda i: (preferred[i], i))
    gap = target - sum(kept)
    for i in order:
        if gap == 0:
            break
        new = min(max(kept[i] + gap, lower[i]), sizes[i])
        gap -= new - kept[i]
        kept[i] = new
    return kept


def segment_floor(size: int, must_keep: int, rate: float | None, min_rate: float) -> int:
    """A segment's lower bound: all of it when its rate is 1 (locked), else must-keep and ``min_rate``."""
    if rate is not None and rate >= 1.0:
        return size
    return min(size, max(must_keep, math.ceil(min_rate * size)))


def chunk_budget(target: int, chunk_sizes: Sequence[int], done_tokens: int, kept_so_far: int, j: int) -> int:
    """Tokens chunk ``j`` keeps so the running total tracks ``target`` proportionally to length.

    ``done_tokens`` is the size of chunks ``< j``; ``kept_so_far`` what they kept. The shortfall or
    excess of earlier chunks (must-keep words, word granularity) is made up here.
    """
    total = sum(chunk_sizes)
    if total == 0:
        return 0
    upto = done_tokens + chunk_sizes[j]
    want = round(target * upto / total) - kept_so_far
    return min(max(want, 0), chunk_sizes[j])


def unit_scores(
    token_info: Sequence[float], bounds: Sequence[tuple[int, int]], how: str = "mean"
) -> list[float]:
    """One score per word from its tokens' self-information."""
    out = []
    for lo, hi in bounds:
        vals = token_info[lo:hi]
        if not len(vals):
            out.append(0.0)
        elif how == "max":
            out.append(float(max(vals)))
        elif how == "sum":
            out.append(float(sum(vals)))
        else:
            out.append(float(sum(vals)) / len(vals))
    return out


def select_units(
    scores: Sequence[float], sizes: Sequence[int], forced: Sequence[bool], budget: int
) -> list[int]:
    """Indices of the words kept: forced ones, then the highest scores that still fit ``budget`` tokens.

    Words are taken greedily by score (ties: earlier first); one that would overflow is skipped and
    smaller ones may still fill the gap. If a gap is left, the word that brings the count closest to
    ``budget`` is added when it overshoots by less than the gap, so the count lands within half a
    word of ``budget`` (above it also when forced words alone exceed it).
    """
    kept = [i for i in range(len(scores)) if forced[i]]
    used = sum(sizes[i] for i in kept)
    for i in sorted((i for i in range(len(scores)) if not forced[i]), key=lambda i: (-scores[i], i)):
        if used >= budget:
            break
        if used + sizes[i] <= budget:
            kept.append(i)
            used += sizes[i]
    gap = budget - used
    if gap > 0:
        taken = set(kept)
        rest = [i for i in range(len(scores)) if i not in taken]
        if rest:
            best = min(rest, key=lambda i: (sizes[i], -scores[i]))
            if sizes[best] - gap < gap:
                kept.append(best)
    return sorted(kept)


def closest_step(gap: int, sizes: Sequence[int]) -> int | None:
    """Index of the word whose size leaves the smallest |gap − size|, if smaller than |gap| (else None).

    ``gap`` > 0 is what is missing from the budget (a word to add), so a word of size ``s`` helps
    when ``|gap − s| < gap``; ties go to the earlier word. Used once per example after the
    chunks, so the miss of the last shortened segment does not stay (e.g. a long question word).
    """
    best, best_left = None, gap
    for i, s in enumerate(sizes):
        left = abs(gap - s)
        if left < best_left:
            best, best_left = i, left
    return best
