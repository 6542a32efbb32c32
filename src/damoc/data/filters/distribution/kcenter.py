"""D2: k-center greedy coreset on embeddings (Sener & Savarese 2018)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from damoc.data.filters.base import Filter, FilterContext, FilterOptions, Selection
from damoc.io.tasks import Example


class KCenterOptions(FilterOptions):
    start: Literal["random", "medoid"] = (
        "random"  # first center: a seeded random row, or the one nearest the mean
    )


def kcenter_greedy(x: np.ndarray, k: int, first: int) -> tuple[list[int], np.ndarray]:
    """Greedy 2-approximation of k-center: repeatedly add the row farthest from the chosen ones.

    Returns the chosen indices in order and every row's distance to its nearest chosen row.
    """
    x = np.asarray(x, dtype=np.float32)
    sq = (x * x).sum(1)
    chosen = [first]
    dist = np.sqrt(np.maximum(sq + sq[first] - 2.0 * x @ x[first], 0.0))
    dist[first] = -1.0
    for _ in range(k - 1):
        j = int(np.argmax(dist))
        chosen.append(j)
        d = np.sqrt(np.maximum(sq + sq[j] - 2.0 * x @ x[j], 0.0))
        dist = np.minimum(dist, d)
        dist[chosen] = -1.0
    dist[chosen] = 0.0
    return chosen, dist


class KCenterFilter(Filter):
    """k-center greedy on embeddings: each pick is the row farthest from those already picked."""

    name = "kcenter"
    code = "D2"
    family = "distribution"
    Options = KCenterOptions

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        x = ctx.embed(examples)
        if self.options.start == "medoid":
            first = int(np.argmin(((x - x.mean(0)) ** 2).sum(1)))
        else:
            first = int(ctx.rng(2).integers(len(examples)))
        chosen, dist = kcenter_greedy(x, k, first)
        return Selection(
            indices=chosen,
            scores=[float(d) for d in dist],
            score_name="distance_to_nearest_center",
            info={"radius": float(dist.max())},
        )
