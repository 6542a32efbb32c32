"""H1: cluster-and-rank: k-means on embeddings, then the best-quality rows of every cluster."""

from __future__ import annotations

import numpy as np

from damoc.data.filters.base import Filter, FilterContext, Selection, kmeans_labels, rank_desc
from damoc.data.filters.hybrid.common import HybridOptions, quality_scores
from damoc.io.tasks import Example


class ClusterRankOptions(HybridOptions):
    clusters: int | None = None  # default: the budget (one best row per cluster)
    max_iter: int = 100  # most k-means (Lloyd) iterations per run (scikit-learn KMeans, 3 restarts)


def round_robin(groups: list[np.ndarray], k: int) -> list[int]:
    """Take the 1st row of every group, then the 2nd, ... until ``k`` (groups are already ranked)."""
    chosen: list[int] = []
    depth = 0
    while len(chosen) < k:
        layer = [int(g[depth]) for g in groups if depth < len(g)]
        if not layer:
            break
        chosen.extend(layer[: k - len(chosen)])
        depth += 1
    return chosen


class ClusterRankFilter(Filter):
    """k-means clusters, then the highest-quality rows of each cluster in turn."""

    name = "cluster-rank"
    code = "H1"
    family = "hybrid"
    Options = ClusterRankOptions

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        o = self.options
        x = ctx.embed(examples)
        q = quality_scores(o, examples, ctx)
        labels, _ = kmeans_labels(x, o.clusters or k, ctx.seed, o.max_iter)
        order = rank_desc(q, ctx.rng(6))  # global quality order; each cluster keeps its members in it
        rank_of = np.empty(len(order), dtype=np.int64)
        rank_of[order] = np.arange(len(order))
        groups = [m[np.argsort(rank_of[m])] for m in (np.flatnonzero(labels == c) for c in np.unique(labels))]
        groups.sort(key=lambda g: rank_of[g[0]])  # the cluster with the best row goes first
        return Selection(
            indices=round_robin(groups, k),
            scores=[float(v) for v in q],
            score_name=f"quality:{o.quality}",
            info={"clusters": len(groups)},
        )
