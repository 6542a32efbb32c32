"""Magnitude pruning (baseline): drop the smallest |W| of the layer; ignores the calibration data."""

from __future__ import annotations

import torch

from damoc.model.calibrated.config import PruneSpec
from damoc.model.calibrated.masks import nm_mask, prune_lowest
from damoc.model.calibrated.methods import LayerResult


def magnitude(w: torch.Tensor, h: torch.Tensor | None, spec: PruneSpec) -> LayerResult:
    scores = w.detach().float().abs()
    nm = spec.nm
    keep = nm_mask(scores, *nm) if nm else prune_lowest(scores, spec.target, dim=None)
    return LayerResult(weight=w * keep.to(w.dtype), mask=keep)


magnitude.needs_calibration = False  # type: ignore[attr-defined]
