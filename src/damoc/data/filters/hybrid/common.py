"""What the hybrids share: options naming the quality method, and quality normalised to [0, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import field_validator

from damoc.data.filters.base import FILTERS, FilterContext, FilterOptions, QualityFilter
from damoc.io.tasks import Example


class HybridOptions(FilterOptions):
    quality: str = "heuristics"  # a quality-family filter whose score ranks rows
    quality_options: dict[str, Any] = {}  # that filter's options

    @field_validator("quality")
    @classmethod
    def _is_quality_filter(cls, v: str) -> str:
        entry = FILTERS.entry(v)
        if entry.family != "quality":
            raise ValueError(
                f"'{v}' is a {entry.family} filter; quality must be one of {FILTERS.names('quality')}"
            )
        return entry.name


def quality_scores(opts: HybridOptions, examples: list[Example], ctx: FilterContext) -> np.ndarray:
    """The configured quality method's per-example quality (higher is better)."""
    filt = FILTERS.get(opts.quality)(opts.quality_options)
    assert isinstance(filt, QualityFilter)
    return np.asarray(filt.quality(examples, ctx), dtype=np.float64)


def normalize_quality(q: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Min-max scale to [floor, 1]; all-equal quality becomes all ones."""
    q = np.asarray(q, dtype=np.float64)
    finite = np.isfinite(q)
    if not finite.any():
        return np.ones(len(q))
    lo, hi = q[finite].min(), q[finite].max()
    scaled = (q - lo) / (hi - lo) if hi > lo else np.ones(len(q))
    out = np.where(finite, scaled, 0.0)
    return floor + (1.0 - floor) * out
