"""SparseGPT (Frantar & Alistarh, 2023): OBS pruning with lazy 128-column blocks.

Saliency of weight (i, j) is ``w_ij² / [H⁻¹]_jj²`` (with ``[H⁻¹]`` read from the upper Cholesky
factor of the damped inverse, as in the paper's Algorithm 1). Unstructured masks are chosen per block
(the lowest ``sparsity`` fraction of the block's saliencies); N:M masks every M columns, per row.
"""

from __future__ import annotations

import torch

from damoc.model.calibrated.config import PruneSpec
from damoc.model.calibrated.masks import nm_mask, prune_lowest
from damoc.model.calibrated.methods import LayerResult
from damoc.model.calibrated.obs import Rounder, damped_inverse_cholesky, handle_dead_inputs, obs_sweep


class _MaskRounder(Rounder):
    def __init__(self, spec: PruneSpec, rows: int, cols: int, device: torch.device | None = None):
        self.spec = spec
        self.nm = spec.nm
        self.keep = torch.ones(rows, cols, dtype=torch.bool, device=device)
        self.block_keep: torch.Tensor | None = None
        self.col0 = 0

    def start_block(self, w1: torch.Tensor, hinv1: torch.Tensor, col0: int, w: torch.Tensor) -> None:
        self.col0 = col0
        if self.nm is None:
            sal = w1**2 / torch.diagonal(hinv1).unsqueeze(0) ** 2
            self.block_keep = prune_lowest(sal, self.spec.target, dim=None)
        else:
            self.block_keep = torch.ones_like(w1, dtype=torch.bool)

    def round(self, col: int, i: int, w1: torch.Tensor, hinv1: torch.Tensor) -> torch.Tensor:
        assert self.block_keep is not None
        if self.nm is not None and i % self.nm[1] == 0:
            n, m = self.nm
            sal = w1[:, i : i + m] ** 2 / torch.diagonal(hinv1)[i : i + m].unsqueeze(0) ** 2
            self.block_keep[:, i : i + m] = nm_mask(sal, n, m)
        keep = self.block_keep[:, i]
        self.keep[:, col] = keep
        return w1[:, i] * keep


def sparsegpt(w: torch.Tensor, h: torch.Tensor, spec: PruneSpec) -> LayerResult:
    rows, cols = w.shape
    if spec.nm is not None and cols % spec.nm[1]:
        nm_mask(torch.zeros(1, cols), *spec.nm)  # raises the one-line error
    w32, h32 = handle_dead_inputs(w.detach().float(), h.float())
    hinv = damped_inverse_cholesky(h32, spec.damp)
    rounder = _MaskRounder(spec, rows, cols, w32.device)
    new = obs_sweep(w32, hinv, rounder, spec.block_size)
    new = new * rounder.keep  # exact zeros where pruned
    return LayerResult(weight=new.to(w.dtype), mask=rounder.keep)
