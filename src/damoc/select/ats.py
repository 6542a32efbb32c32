"""Predict each candidate's full-data fine-tune loss from fine-tunes on small subsets (AtS).

Lin et al. 2024, "Selecting Large Language Model to Fine-tune via Rectified Scaling Law" (arXiv
2402.02314). The fine-tuning loss follows the rectified scaling law

    L(D) = B / (D_l + D^β) + E

where D is the number of fine-tuning rows and D_l the "pre-learned data size": with small D the curve is
flat (pre-power phase, D^β << D_l), with larger D it is a power law, a straight line in log-log (power
phase). "Accept then Stop" (AtS) fine-tunes each candidate on subsets of decreasing size, accepts the
points that stay on the log-log line fitted to the larger ones, stops at the first that leaves it (the
pre-power phase has begun), and extrapolates the line to the full training size. Candidates are ranked by
the predicted loss.

:func:`fit_rectified` fits all four parameters when there are enough points (at least five); with the two
to four points a cheap budget allows, :func:`accept_then_stop` is the method (the law's power phase).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LineFit:
    """``log L = intercept + slope · log D`` over the accepted points."""

    slope: float
    intercept: float
    accepted: list[int] = field(default_factory=list)  # subset sizes on the line, largest first
    rejected: int | None = None  # the first size that left the line (None: every point was accepted)

    def predict(self, n_rows: float) -> float:
        return math.exp(self.intercept + self.slope * math.log(n_rows))


def _line(sizes: Sequence[float], losses: Sequence[float]) -> tuple[float, float]:
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(losses, float))
    if len(x) == 1 or np.ptp(x) == 0:
        return 0.0, float(y.mean())
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def accept_then_stop(
    sizes: Sequence[int], losses: Sequence[float], min_points: int = 2, tolerance: float = 0.05
) -> LineFit:
    """The AtS fit of one candidate's (subset size, dev loss) points.

    Points are taken from the largest subset down. The first ``min_points`` are accepted as they are; each
    further (smaller) point is accepted while its log loss lies within ``tolerance`` (in log units: 0.05
    is about 5%) of the line through the points accepted so far, and the first one that does not stops the
    walk. The returned line is fitted to the accepted points.
    """
    if len(sizes) != len(losses) or not sizes:
        raise ValueError("need one loss per subset size")
    if any(s <= 0 for s in sizes) or any(not (loss > 0) for loss in losses):
        raise ValueError("subset sizes and losses must be positive")
    if min_points < 1:
        raise ValueError("min_points must be >= 1")
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    acc = order[:min_points]
    rejected = None
    for i in order[min_points:]:
        slope, intercept = _line([sizes[j] for j in acc], [losses[j] for j in acc])
        if abs(math.log(losses[i]) - (intercept + slope * math.log(sizes[i]))) > tolerance:
            rejected = int(sizes[i])
            break
        acc.append(i)
    slope, intercept = _line([sizes[j] for j in acc], [losses[j] for j in acc])
    return LineFit(slope, intercept, accepted=[int(sizes[j]) for j in acc], rejected=rejected)


@dataclass
class RectifiedFit:
    b: float
    d_l: float
    beta: float
    e: float

    def predict(self, n_rows: float) -> float:
        return self.b / (self.d_l + n_rows**self.beta) + self.e


def fit_rectified(sizes: Sequence[int], losses: Sequence[float]) -> RectifiedFit:
    """Least-squares fit of all four parameters of the rectified law (in log loss; needs >= 5 points)."""
    from scipy.optimize import least_squares

    if len(sizes) < 5:
        raise ValueError(
            f"the rectified law has four parameters: fit it to at least 5 points, got {len(sizes)}"
        )
    d = np.asarray(sizes, float)
    y = np.log(np.asarray(losses, float))

    def resid(p):
        log_b, log_dl, beta, log_e = p
        pred = np.exp(log_b) / (np.exp(log_dl) + d**beta) + np.exp(log_e)
        return np.log(pred) - y

    lo = float(np.min(losses))
    start = [math.log(float(np.max(losses)) * 10), math.log(10.0), 0.5, math.log(max(lo * 0.5, 1e-6))]
    sol = least_squares(resid, start, bounds=([-20, -20, 0.01, -20], [30, 30, 2.0, math.log(lo)]))
    log_b, log_dl, beta, log_e = sol.x
    return RectifiedFit(math.exp(log_b), math.exp(log_dl), float(beta), math.exp(log_e))
