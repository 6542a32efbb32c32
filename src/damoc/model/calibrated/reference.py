"""Textbook references for tests and benchmarks: Optimal Brain Surgeon one column at a time, in float64,
with the explicit inverse ``H_F⁻¹`` of the remaining columns downdated after each column (Gaussian
elimination) — no Cholesky factor, no lazy blocks. Slow (O(n³) per column for the saliencies); for
small layers only. The same mask / group rules as :mod:`sparsegpt` and :mod:`gptq`, so results must
agree up to floating-point error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from damoc.model.calibrated.config import PruneSpec, QuantSpec
from damoc.model.calibrated.masks import nm_mask, prune_lowest
from damoc.model.calibrated.quant import minmax_params, quantize_codes


def _damped(h: torch.Tensor, damp: float) -> torch.Tensor:
    h = h.double().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    return h + damp * float(torch.diagonal(h).mean()) * torch.eye(h.shape[0], dtype=h.dtype)


def _obs_columns(
    w: torch.Tensor, h: torch.Tensor, rule: Callable[[int, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Replace column j by ``rule(j, W)`` for j = 0..n-1, updating the later columns optimally."""
    w = w.double().clone()
    hinv = torch.linalg.inv(h)
    for j in range(w.shape[1]):
        q = rule(j, w)
        d = hinv[j, j]
        err = (w[:, j] - q) / d
        w[:, j:] -= err.unsqueeze(1) * hinv[j, j:].unsqueeze(0)
        w[:, j] = q
        hinv = hinv - torch.outer(hinv[:, j], hinv[j, :]) / d
    return w


def sparsegpt_reference(w: torch.Tensor, h: torch.Tensor, spec: PruneSpec) -> torch.Tensor:
    hd = _damped(h, spec.damp)
    n = hd.shape[0]
    # [H_F⁻¹]_jj for F = {j, ..., n-1}: the OBS denominator when column j is reached
    dj = torch.tensor([float(torch.linalg.inv(hd[j:, j:])[0, 0]) for j in range(n)], dtype=torch.float64)
    keep = torch.ones(w.shape, dtype=torch.bool)
    nm = spec.nm

    def rule(j: int, cur: torch.Tensor) -> torch.Tensor:
        if nm is None and j % spec.block_size == 0:
            blk = slice(j, min(n, j + spec.block_size))
            keep[:, blk] = prune_lowest(cur[:, blk] ** 2 / dj[blk].unsqueeze(0), spec.target, dim=None)
        if nm is not None and j % nm[1] == 0:
            grp = slice(j, j + nm[1])
            keep[:, grp] = nm_mask(cur[:, grp] ** 2 / dj[grp].unsqueeze(0), *nm)
        return cur[:, j] * keep[:, j]

    return _obs_columns(w, hd, rule).float()


def gptq_reference(w: torch.Tensor, h: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """GPTQ without act-order: group parameters from the group's current values when it is reached."""
    hd = _damped(h, spec.damp)
    group = spec.group(w.shape[1])
    params: dict[str, torch.Tensor] = {}

    def rule(j: int, cur: torch.Tensor) -> torch.Tensor:
        if j % group == 0:
            params["scale"], params["zero"] = minmax_params(cur[:, j : j + group], spec.bits, spec.symmetric)
        s, z = params["scale"], params["zero"]
        return (s * (quantize_codes(cur[:, j : j + 1], s, z, spec.bits) - z))[:, 0]

    return _obs_columns(w, hd, rule).float()
