"""D1: random sampling, stratified by label where the rows have one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from damoc.data.filters.base import Filter, FilterContext, FilterOptions, Selection, allocate
from damoc.io.tasks import Example


class RandomOptions(FilterOptions):
    stratify: bool = True  # keep label proportions when labels exist


def stratified_sample(labels: Sequence[str | None], k: int, rng: np.random.Generator) -> list[int]:
    """``k`` indices whose label counts follow the pool's proportions (largest remainder)."""
    strata: dict[str | None, list[int]] = {}
    for i, lab in enumerate(labels):
        strata.setdefault(lab, []).append(i)
    keys = sorted(strata, key=lambda s: (s is None, str(s)))
    takes = allocate([len(strata[s]) for s in keys], k)
    chosen: list[int] = []
    for s, t in zip(keys, takes, strict=True):
        members = np.asarray(strata[s])
        chosen.extend(int(i) for i in rng.permutation(members)[:t])
    return [int(i) for i in rng.permutation(chosen)]


class RandomFilter(Filter):
    """Uniform random sample, stratified by label when labels exist (the baseline)."""

    name = "random"
    code = "D1"
    family = "distribution"
    Options = RandomOptions

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        rng = ctx.rng(1)
        labels = ctx.labels(examples)
        if self.options.stratify and any(lab is not None for lab in labels):
            idx = stratified_sample(labels, k, rng)
            return Selection(indices=idx, info={"stratified": True})
        return Selection(
            indices=[int(i) for i in rng.permutation(len(examples))[:k]], info={"stratified": False}
        )
