"""D3: k-means on embeddings, then sample each cluster in proportion to its size."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from damoc.data.filters.base import (
    Filter,
    FilterContext,
    FilterOptions,
    Selection,
    allocate,
    kmeans_labels,
)
from damoc.io.tasks import Example


class KMeansOptions(FilterOptions):
    clusters: int | None = None  # default: round(sqrt(n)), at least 2
    within: Literal["random", "centroid"] = "random"  # how rows are taken inside a cluster
    max_iter: int = 100  # most k-means (Lloyd) iterations per run (scikit-learn KMeans, 3 restarts)


class KMeansFilter(Filter):
    """k-means clusters of the embeddings, sampled in proportion to cluster size."""

    name = "kmeans"
    code = "D3"
    family = "distribution"
    Options = KMeansOptions

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        o = self.options
        x = ctx.embed(examples)
        n_clusters = o.clusters or max(2, round(math.sqrt(len(examples))))
        labels, centers = kmeans_labels(x, n_clusters, ctx.seed, o.max_iter)
        ids = np.unique(labels)
        members = [np.flatnonzero(labels == c) for c in ids]
        takes = allocate([len(m) for m in members], k)
        rng = ctx.rng(3)
        chosen: list[int] = []
        for c, m, t in zip(ids, members, takes, strict=True):
            if o.within == "centroid":
                d = ((x[m] - centers[c]) ** 2).sum(1)
                chosen.extend(int(i) for i in m[np.argsort(d, kind="stable")[:t]])
            else:
                chosen.extend(int(i) for i in rng.permutation(m)[:t])
        return Selection(
            indices=chosen,
            scores=[float(c) for c in labels],
            score_name="cluster",
            info={"clusters": len(ids), "cluster_sizes": [len(m) for m in members]},
        )
