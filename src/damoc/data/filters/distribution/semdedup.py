"""D4: semantic de-duplication (SemDeDup, Abbas et al. 2023), then fill the budget."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from damoc.data.filters.base import Filter, FilterContext, FilterOptions, Selection, kmeans_labels
from damoc.io.tasks import Example


class SemDeDupOptions(FilterOptions):
    threshold: float = 0.9  # cosine similarity above which two rows are near-duplicates
    clusters: int | None = None  # default: round(sqrt(n)), at least 1
    keep: Literal["far", "near"] = "far"  # which duplicate survives: farthest from / nearest to the centroid
    max_iter: int = 100  # most k-means (Lloyd) iterations per run (scikit-learn KMeans, 3 restarts)


def dedup_cluster(x: np.ndarray, order: np.ndarray, threshold: float) -> tuple[list[int], np.ndarray]:
    """Walk rows in ``order``; keep a row unless its cosine to an already kept row exceeds ``threshold``.

    ``x`` rows are L2-normalised. Returns the kept positions (into ``x``) and, per row, the highest
    similarity to a row kept before it (its duplicate score).
    """
    kept: list[int] = []
    dup = np.zeros(len(x), dtype=np.float32)
    for i in order:
        if kept:
            s = float((x[kept] @ x[i]).max())
            dup[i] = s
            if s > threshold:
                continue
        kept.append(int(i))
    return kept, dup


class SemDeDupFilter(Filter):
    """Drop near-duplicates (cosine above a threshold) within k-means clusters, then fill the budget."""

    name = "semdedup"
    code = "D4"
    family = "distribution"
    Options = SemDeDupOptions

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        o = self.options
        x = ctx.embed(examples)
        n = len(examples)
        labels, centers = kmeans_labels(x, o.clusters or max(1, round(math.sqrt(n))), ctx.seed, o.max_iter)
        keep = np.zeros(n, dtype=bool)
        dup = np.zeros(n, dtype=np.float32)
        for c in np.unique(labels):
            m = np.flatnonzero(labels == c)
            cen = centers[c] / max(float(np.linalg.norm(centers[c])), 1e-12)
            sim = x[m] @ cen
            order = np.argsort(sim if o.keep == "far" else -sim, kind="stable")
            kept, d = dedup_cluster(x[m], order, o.threshold)
            keep[m[kept]] = True
            dup[m] = d
        rng = ctx.rng(4)
        uniq = rng.permutation(np.flatnonzero(keep))
        dups = np.flatnonzero(~keep)
        dups = dups[np.lexsort((rng.permutation(len(dups)), dup[dups]))]  # least duplicated first
        chosen = np.concatenate([uniq, dups])[:k]
        return Selection(
            indices=[int(i) for i in chosen],
            scores=[float(s) for s in dup],
            score_name="max_similarity_to_kept",
            info={"duplicates": int((~keep).sum()), "unique": int(keep.sum())},
        )
