"""Ranking agreement (docs/metrics.md): Spearman, Kendall, top-1 hit, top-1 regret, pairwise accuracy.

Pure functions over ``{candidate: score}`` maps; the direction (lower or higher is better) is explicit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import combinations

from damoc.select.records import Agreement, Method


def ranking(scores: Mapping[str, float], higher_is_better: bool) -> list[str]:
    """Candidates best first (ties keep the input order)."""
    return sorted(scores, key=lambda c: -scores[c] if higher_is_better else scores[c])


def top1_regret(pred: Mapping[str, float], true: Mapping[str, float], higher_is_better: bool) -> float:
    """True score of the true best minus the true score of the candidate the prediction picks (>= 0)."""
    picked = ranking(pred, higher_is_better)[0]
    best = ranking(true, higher_is_better)[0]
    gap = true[best] - true[picked]
    return float(gap if higher_is_better else -gap)


def top1_hit(pred: Mapping[str, float], true: Mapping[str, float], higher_is_better: bool) -> bool:
    """The predicted best is (one of) the truly best."""
    return top1_regret(pred, true, higher_is_better) <= 0.0


def pairwise_accuracy(pred: Mapping[str, float], true: Mapping[str, float]) -> float | None:
    """Share of candidate pairs (not tied in truth) that the prediction orders the same way; a tie counts 1/2."""
    good, n = 0.0, 0
    for a, b in combinations(list(true), 2):
        t = true[a] - true[b]
        if t == 0:
            continue
        p = pred[a] - pred[b]
        n += 1
        good += 0.5 if p == 0 else float((p > 0) == (t > 0))
    return good / n if n else None


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def rank_correlations(
    pred: Mapping[str, float], true: Mapping[str, float]
) -> tuple[float | None, float | None]:
    """(Spearman ρ, Kendall τ-b) between two score maps over the same candidates (None if undefined)."""
    from scipy.stats import kendalltau, spearmanr

    names = list(true)
    if len(names) < 2:
        return None, None
    x = [pred[c] for c in names]
    y = [true[c] for c in names]
    if len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    rho = spearmanr(x, y).statistic
    tau = kendalltau(x, y).statistic
    return _finite(rho), _finite(tau)


def agreement(
    method: Method, pred: Mapping[str, float], true: Mapping[str, float], higher_is_better: bool
) -> Agreement:
    """Agreement of ``pred`` with ``true`` over the candidates both have scores for."""
    common = [c for c in true if c in pred]
    p = {c: pred[c] for c in common}
    t = {c: true[c] for c in common}
    if not common:
        return Agreement(method=method, n=0)
    rho, tau = rank_correlations(p, t)
    return Agreement(
        method=method,
        n=len(common),
        spearman=rho,
        kendall=tau,
        top1_hit=top1_hit(p, t, higher_is_better),
        top1_regret=top1_regret(p, t, higher_is_better),
        pairwise_acc=pairwise_accuracy(p, t),
        ranking=ranking(p, higher_is_better),
    )
