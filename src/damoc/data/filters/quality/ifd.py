"""Q2: instruction-following difficulty, IFD = loss(answer | question) / loss(answer) (Li et al. 2024)."""

from __future__ import annotations

from typing import Any

import numpy as np

from damoc.data.filters.base import FilterContext, FilterOptions, QualityFilter
from damoc.data.filters.quality.perplexity import mean_token_nll
from damoc.io.tasks import Example


class IFDOptions(FilterOptions):
    max_ifd: float = 1.0  # rows at or above this (the prompt does not help) go last
    max_length: int = 256  # tokens per prompt+answer pair (prompt cut from the left, answer kept)
    batch_size: int = 8  # pairs per reference-LM forward pass


def ifd_quality(ifd: np.ndarray, max_ifd: float) -> np.ndarray:
    """Higher IFD first (harder, more informative rows); rows with IFD >= max_ifd rank below all others."""
    ifd = np.nan_to_num(ifd, nan=np.inf)
    return np.where(ifd < max_ifd, ifd, -ifd)


class IFDFilter(QualityFilter):
    """Instruction-following difficulty: keep rows whose answer the question helps least (IFD < 1)."""

    name = "ifd"
    code = "Q2"
    Options = IFDOptions
    score_name = "ifd"

    def scores(self, examples: list[Example], ctx: FilterContext) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        answers = [e.answer for e in examples]
        cond = mean_token_nll(
            ctx, [e.prompt() for e in examples], answers, o.max_length, o.batch_size, "ifd: conditioned"
        )
        plain = mean_token_nll(
            ctx, [""] * len(answers), answers, o.max_length, o.batch_size, "ifd: answer alone"
        )
        ifd = cond / np.maximum(plain, 1e-9)
        return ifd, ifd_quality(ifd, o.max_ifd)

    def info(self, raw: np.ndarray, quality: np.ndarray) -> dict[str, Any]:
        return {"rows_ifd_ge_max": int((quality < 0).sum()), "median_ifd": float(np.nanmedian(raw))}
