"""Masks from scores: unstructured per row, per layer, per block, and N:M. True = keep."""

from __future__ import annotations

import torch

from damoc.errors import DamocError


def prune_lowest(scores: torch.Tensor, sparsity: float, dim: int | None = -1) -> torch.Tensor:
    """Keep-mask that drops the ``int(n * sparsity)`` lowest scores along ``dim`` (``None``: whole tensor)."""
    if dim is None:
        flat = scores.reshape(-1)
        k = int(flat.numel() * sparsity)
        keep = torch.ones_like(flat, dtype=torch.bool)
        if k > 0:
            keep[torch.topk(flat, k, largest=False).indices] = False
        return keep.view_as(scores)
    k = int(scores.shape[dim] * sparsity)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        idx = torch.topk(scores, k, dim=dim, largest=False).indices
        keep.scatter_(dim, idx, False)
    return keep


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` highest of every ``m`` consecutive scores along the last (input) dimension."""
    rows, cols = scores.shape
    if cols % m:
        raise DamocError(
            f"a layer with {cols} inputs cannot take an {n}:{m} pattern ({cols} is not a multiple of {m})"
        )
    groups = scores.reshape(rows, cols // m, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, torch.topk(groups, n, dim=2).indices, True)
    return keep.reshape(rows, cols)


def is_valid_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of ``m`` consecutive inputs keeps exactly ``n`` weights."""
    rows, cols = mask.shape
    if cols % m:
        return False
    return bool((mask.reshape(rows, cols // m, m).sum(-1) == n).all())


def sparsity_of(w: torch.Tensor) -> float:
    return float((w == 0).sum()) / max(1, w.numel())
