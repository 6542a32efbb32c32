"""D5: DSIR, data selection by importance resampling on hashed n-grams (Xie et al. 2023)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from damoc.data.filters.base import Filter, FilterContext, FilterOptions, Selection
from damoc.errors import DamocError
from damoc.io.tasks import Example


class DSIROptions(FilterOptions):
    buckets: int = 10_000  # hashed n-gram feature space
    ngram_max: int = 2  # unigrams .. ngram_max-grams
    smoothing: float = 1.0  # add-alpha smoothing of both bag-of-n-gram distributions
    length_normalize: bool = False  # mean instead of sum of per-n-gram log ratios (paper: sum)
    resample: bool = True  # Gumbel top-k sampling by the weights; False: deterministic top-k
    temperature: float = 1.0  # log-weights are divided by this before sampling


def hashed_ngrams(texts: Sequence[str], buckets: int, ngram_max: int):
    """Sparse (n, buckets) counts of hashed word n-grams (murmur hash: stable across processes)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    hv = HashingVectorizer(
        n_features=buckets, ngram_range=(1, ngram_max), alternate_sign=False, norm=None, lowercase=True
    )
    return hv.transform(list(texts))


def importance_log_weights(raw_counts, target_counts, smoothing: float, length_normalize: bool) -> np.ndarray:
    """log p_target(x) - log p_raw(x) under bag-of-n-gram models fitted on each side."""
    pt = np.asarray(target_counts.sum(0)).ravel() + smoothing
    pr = np.asarray(raw_counts.sum(0)).ravel() + smoothing
    log_ratio = np.log(pt / pt.sum()) - np.log(pr / pr.sum())
    w = np.asarray(raw_counts @ log_ratio).ravel()
    if length_normalize:
        w = w / np.maximum(np.asarray(raw_counts.sum(1)).ravel(), 1.0)
    return w


def gumbel_top_k(log_w: np.ndarray, k: int, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
    """Sample ``k`` rows without replacement with probability proportional to exp(log_w / T)."""
    g = rng.gumbel(size=len(log_w))
    keys = log_w / max(temperature, 1e-12) + g
    return np.argsort(-keys, kind="stable")[:k]


class DSIRFilter(Filter):
    """Importance resampling toward target (dev/seed) rows on hashed n-gram features."""

    name = "dsir"
    code = "D5"
    family = "distribution"
    Options = DSIROptions

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        o = self.options
        if not ctx.target:
            raise DamocError("dsir needs target examples (the task's dev split or --target FILE)")
        raw = hashed_ngrams(ctx.texts(examples), o.buckets, o.ngram_max)
        tgt = hashed_ngrams(ctx.texts(ctx.target), o.buckets, o.ngram_max)
        log_w = importance_log_weights(raw, tgt, o.smoothing, o.length_normalize)
        if o.resample:
            chosen = gumbel_top_k(log_w, k, ctx.rng(5), o.temperature)
        else:
            chosen = np.lexsort((ctx.rng(5).permutation(len(log_w)), -log_w))[:k]
        return Selection(
            indices=[int(i) for i in chosen],
            scores=[float(w) for w in log_w],
            score_name="log_importance_weight",
            info={"target_rows": len(ctx.target)},
        )
