"""Wanda (Sun et al., 2023): score |W_ij| · ‖X_j‖₂, compared within each output row."""

from __future__ import annotations

import torch

from damoc.model.calibrated.config import PruneSpec
from damoc.model.calibrated.hessian import activation_norms
from damoc.model.calibrated.masks import nm_mask, prune_lowest
from damoc.model.calibrated.methods import LayerResult


def wanda_scores(w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``|W_ij| · ‖X_j‖₂`` with ``‖X_j‖₂ ∝ sqrt(H_jj)`` (the mixed statistics of all sources).

    ``h`` is the full H or its diagonal.
    """
    return w.detach().float().abs() * activation_norms(h.float()).unsqueeze(0)


def wanda(w: torch.Tensor, h: torch.Tensor, spec: PruneSpec) -> LayerResult:
    scores = wanda_scores(w, h)
    nm = spec.nm
    keep = nm_mask(scores, *nm) if nm else prune_lowest(scores, spec.target, dim=-1)
    return LayerResult(weight=w * keep.to(w.dtype), mask=keep)


wanda.statistic = "diagonal"  # type: ignore[attr-defined]  # the pipeline accumulates Σ x² only
