"""H3: quality-weighted k-center: each pick maximises distance-to-chosen times normalised quality."""

from __future__ import annotations

import numpy as np

from damoc.data.filters.base import Filter, FilterContext, Selection, rank_desc
from damoc.data.filters.hybrid.common import HybridOptions, normalize_quality, quality_scores
from damoc.io.tasks import Example


class QualityKCenterOptions(HybridOptions):
    alpha: float = 1.0  # quality exponent: 0 is plain k-center
    floor: float = 0.05  # lowest normalised quality, so a poor but isolated row can still be reached


def quality_kcenter(x: np.ndarray, quality: np.ndarray, k: int, first: int, alpha: float) -> list[int]:
    """Greedy picks of argmax (min distance to chosen) * quality**alpha, starting at ``first``."""
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(quality, dtype=np.float64) ** alpha
    sq = (x * x).sum(1)
    chosen = [first]
    dist = np.sqrt(np.maximum(sq + sq[first] - 2.0 * x @ x[first], 0.0)).astype(np.float64)
    dist[first] = -1.0
    for _ in range(k - 1):
        j = int(np.argmax(np.where(dist >= 0, dist * w, -1.0)))
        chosen.append(j)
        dist = np.minimum(dist, np.sqrt(np.maximum(sq + sq[j] - 2.0 * x @ x[j], 0.0)))
        dist[chosen] = -1.0
    return chosen


class QualityKCenterFilter(Filter):
    """k-center greedy where each candidate's distance is weighted by its normalised quality."""

    name = "quality-kcenter"
    code = "H3"
    family = "hybrid"
    Options = QualityKCenterOptions

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        o = self.options
        x = ctx.embed(examples)
        q = quality_scores(o, examples, ctx)
        qn = normalize_quality(q, o.floor)
        first = int(rank_desc(q, ctx.rng(8))[0])  # start from the best row
        return Selection(
            indices=quality_kcenter(x, qn, k, first, o.alpha),
            scores=[float(v) for v in q],
            score_name=f"quality:{o.quality}",
        )
