"""How well a cheap ranking matches a resolved ground truth.

The truth's score of each candidate comes with per-row scores on the same dev rows, so every pair of
candidates gets a paired-bootstrap interval of its difference (:mod:`damoc.evaluate.paired`). A pair whose
interval excludes zero is *resolved* (the truth says which is better); one whose interval crosses zero is a
*tie*: no ranking can be right or wrong about it. Against that truth a method's ranking is judged by

- **top-1 within noise**: the method's pick is the truth's best, or tied with it;
- **regret**: the truth's best score minus the truth's score of the pick (metric units, >= 0);
- **resolved-pair accuracy**: the share of resolved pairs the method orders the same way;
- **Kendall τ** between the truth's and the method's scores (τ-b, ties allowed).

Likelihood metrics per byte (answer bits/byte) pool as a ratio of sums, so their rows are weighted by
the answer's bytes; every other metric is a plain mean of per-row values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from damoc.evaluate.paired import paired_bpb_difference


@dataclass
class TruthPair:
    """The truth's verdict on one pair: ``better`` is the better candidate, None for a tie."""

    a: str
    b: str
    diff: float  # score(a) - score(b), metric units
    ci_low: float
    ci_high: float
    better: str | None


@dataclass
class ResolvedTruth:
    scores: dict[str, float]
    higher_is_better: bool
    pairs: list[TruthPair] = field(default_factory=list)

    def best(self) -> str:
        key = (lambda c: -self.scores[c]) if self.higher_is_better else (lambda c: self.scores[c])
        return min(self.scores, key=key)

    def tied(self, a: str, b: str) -> bool:
        return a == b or any({p.a, p.b} == {a, b} and p.better is None for p in self.pairs)

    @property
    def resolved(self) -> list[TruthPair]:
        return [p for p in self.pairs if p.better is not None]


def pooled(values: Sequence[float], weights: Sequence[float] | None) -> float:
    if weights is None:
        return float(sum(values)) / max(1, len(values))
    return float(sum(v * w for v, w in zip(values, weights, strict=True))) / max(1e-12, float(sum(weights)))


def resolve_truth(
    per_row: Mapping[str, Sequence[float]],
    higher_is_better: bool,
    weights: Sequence[float] | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> ResolvedTruth:
    """Resolve every pair of candidates from their per-row truth scores on the same rows.

    ``weights``: per-row weights for a ratio-of-sums metric (answer bytes for bits/byte; the per-row values
    are then bits/byte and are pooled as total bits / total bytes); None for a plain mean.
    """
    names = list(per_row)
    n = len(next(iter(per_row.values()))) if names else 0
    if any(len(v) != n for v in per_row.values()) or n == 0:
        raise ValueError("every candidate needs a score on the same, non-empty rows")
    w = list(weights) if weights is not None else [1.0] * n
    scores = {c: pooled(per_row[c], weights) for c in names}
    out = ResolvedTruth(scores=scores, higher_is_better=higher_is_better)
    for a, b in combinations(names, 2):
        bits_a = [v * x for v, x in zip(per_row[a], w, strict=True)]
        bits_b = [v * x for v, x in zip(per_row[b], w, strict=True)]
        d = paired_bpb_difference(bits_a, bits_b, w, n_boot=n_boot, level=level, seed=seed)
        if d.ci_low > 0 or d.ci_high < 0:
            a_higher = d.diff > 0
            better = a if a_higher == higher_is_better else b
        else:
            better = None
        out.pairs.append(TruthPair(a, b, d.diff, d.ci_low, d.ci_high, better))
    return out


@dataclass
class Fidelity:
    pick: str
    top1_within_noise: bool
    top1_exact: bool
    regret: float
    resolved_pairs: int
    resolved_pair_acc: float | None  # None when the truth resolves no pair
    kendall: float | None


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    from scipy.stats import kendalltau

    if len(x) < 2:
        return None
    tau = kendalltau(x, y).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def judge(truth: ResolvedTruth, method: Mapping[str, float], method_higher_is_better: bool) -> Fidelity:
    """A method's ranking (its score per candidate; its own direction) against the resolved truth."""
    names = [c for c in truth.scores if c in method]
    if len(names) < 2:
        raise ValueError("need at least two candidates scored by both the truth and the method")
    sign = 1.0 if method_higher_is_better else -1.0
    pick = max(names, key=lambda c: sign * method[c])
    best = truth.best()
    regret = abs(truth.scores[best] - truth.scores[pick])
    right = 0
    resolved = [p for p in truth.resolved if p.a in method and p.b in method]
    for p in resolved:
        worse = p.b if p.better == p.a else p.a
        right += sign * (method[p.better] - method[worse]) > 0
    tsign = 1.0 if truth.higher_is_better else -1.0
    tau = kendall_tau([tsign * truth.scores[c] for c in names], [sign * method[c] for c in names])
    return Fidelity(
        pick=pick,
        top1_within_noise=truth.tied(pick, best),
        top1_exact=pick == best,
        regret=regret,
        resolved_pairs=len(resolved),
        resolved_pair_acc=right / len(resolved) if resolved else None,
        kendall=tau,
    )


@dataclass
class SeparatedAgreement:
    """The pairs a method's own paired interval separates, judged by the truth."""

    pairs: int  # pairs of candidates the method scored
    separated: int  # of them, pairs whose interval over the method's own dev rows excludes zero
    agree: int  # separated, and the truth resolves the pair the same way
    disagree: int  # separated, and the truth resolves it the other way
    truth_tied: int  # separated, but the truth ties the pair (no order is right or wrong)

    @property
    def agreement(self) -> float | None:
        """Share of separated pairs the truth orders the same way, among those the truth resolves."""
        judged = self.agree + self.disagree
        return self.agree / judged if judged else None


def separated_agreement(
    per_row: Mapping[str, Sequence[float]],
    higher_is_better: bool,
    truth: ResolvedTruth,
    weights: Sequence[float] | None = None,
    level: float = 0.95,
) -> SeparatedAgreement:
    """Whether the pairs a leaderboard would call separated (the method's own paired-bootstrap interval over
    its dev rows excludes zero) are ordered as the truth orders them. ``per_row`` may cover fewer rows than
    the truth (a method scored on the first n dev rows); ``weights`` are then cut to those rows."""
    n = len(next(iter(per_row.values())))
    own = resolve_truth(per_row, higher_is_better, list(weights)[:n] if weights is not None else None, level)
    out = SeparatedAgreement(len(own.pairs), 0, 0, 0, 0)
    for p in own.resolved:
        t = next((q for q in truth.pairs if {q.a, q.b} == {p.a, p.b}), None)
        if t is None:
            raise ValueError(f"the truth has no pair {p.a} / {p.b}")
        out.separated += 1
        if t.better is None:
            out.truth_tied += 1
        elif t.better == p.better:
            out.agree += 1
        else:
            out.disagree += 1
    return out
