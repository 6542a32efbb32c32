"""H2: Deita-style selection (Liu et al. 2024): best quality first, admitted only if new enough."""

from __future__ import annotations

import numpy as np

from damoc.data.filters.base import Filter, FilterContext, Selection, rank_desc
from damoc.data.filters.hybrid.common import HybridOptions, quality_scores
from damoc.io.tasks import Example


class DeitaOptions(HybridOptions):
    tau: float = 0.1  # admit a row only if its cosine distance to every chosen row exceeds tau


def deita_greedy(x: np.ndarray, order: np.ndarray, k: int, tau: float) -> tuple[list[int], int]:
    """Walk ``order``; admit rows farther than ``tau`` (cosine distance) from all admitted ones.

    If fewer than ``k`` pass, the rest of the budget is filled in ``order``. Returns the chosen rows and
    how many were admitted by the distance rule.
    """
    chosen: list[int] = []
    nearest = np.full(len(x), np.inf)  # cosine distance to the nearest chosen row
    for i in order:
        if nearest[i] > tau:
            chosen.append(int(i))
            nearest = np.minimum(nearest, 1.0 - x @ x[i])
            if len(chosen) == k:
                return chosen, k
    admitted = len(chosen)
    taken = set(chosen)
    chosen.extend(int(i) for i in order if int(i) not in taken)
    return chosen[:k], admitted


class DeitaFilter(Filter):
    """Quality-sorted greedy: admit a row only if its embedding is farther than tau from those chosen."""

    name = "deita"
    code = "H2"
    family = "hybrid"
    Options = DeitaOptions

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        o = self.options
        x = ctx.embed(examples)
        q = quality_scores(o, examples, ctx)
        chosen, admitted = deita_greedy(x, rank_desc(q, ctx.rng(7)), k, o.tau)
        return Selection(
            indices=chosen,
            scores=[float(v) for v in q],
            score_name=f"quality:{o.quality}",
            info={"admitted_by_distance": admitted},
        )
