"""Task-vector merging (LaCo-like): θ_p ← θ_p + λ · Σ_r sparsify(θ_r − θ_p).

Pure tensor math first (:func:`trim_top`, :func:`dare_drop`, :func:`merge_tensor`), then the plumbing
that walks the layers (:func:`merge_task_vectors`), shared by the ``magnitude`` and ``dare`` methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from damoc.model.arch import decoder_layers
from damoc.model.merge.base import MergeInfo, MergeSettings, merge_targets

LOG = logging.getLogger(__name__)

Sparsify = Callable[[torch.Tensor], torch.Tensor]


def trim_top(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` fraction of entries with the largest magnitude (TIES trim); zero the rest."""
    if density >= 1.0:
        return tau.clone()
    k = int(round(density * tau.numel()))
    if k <= 0:
        return torch.zeros_like(tau)
    flat = tau.reshape(-1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.abs().topk(k, sorted=False).indices] = True
    return torch.where(keep, flat, torch.zeros_like(flat)).view_as(tau)


def dare_drop(tau: torch.Tensor, density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep each entry with probability ``density`` and rescale the kept ones by 1/density (DARE)."""
    if density >= 1.0:
        return tau.clone()
    if density <= 0.0:
        return torch.zeros_like(tau)
    keep = torch.rand(tau.shape, generator=generator, device="cpu").to(tau.device) < density
    return torch.where(keep, tau / density, torch.zeros_like(tau))


def merge_tensor(
    base: torch.Tensor,
    others: Sequence[torch.Tensor],
    sparsify: Sparsify,
    scale: float = 1.0,
    scale_by_count: bool = False,
) -> torch.Tensor:
    """``base + λ Σ sparsify(other − base)``; with ``scale_by_count`` λ is divided by k+1 (k = len(others))."""
    lam = scale / (len(others) + 1) if scale_by_count else scale
    out = base.detach().clone().float()
    if lam == 0.0 or not others:
        return out.to(base.dtype)
    for other in others:
        out += lam * sparsify(other.detach().float() - base.detach().float())
    return out.to(base.dtype)


def is_norm_param(name: str) -> bool:
    """Weights of normalisation layers (``*norm*``, GPT-2 style ``ln_*``)."""
    low = name.lower()
    return "norm" in low or any(part.startswith("ln") for part in low.split("."))


@torch.no_grad()
def merge_task_vectors(
    model, removed: list[int], settings: MergeSettings, sparsify: Sparsify, method: str
) -> MergeInfo:
    """Fold every removed layer's sparsified task vector into its nearest kept layer (in place)."""
    layers = decoder_layers(model)
    targets = merge_targets(len(layers), removed)
    groups: dict[int, list[int]] = {}
    for r, p in targets.items():
        groups.setdefault(p, []).append(r)
    skipped_norms = 0
    for p, rs in sorted(groups.items()):
        base = {n: t.detach().clone() for n, t in layers[p].state_dict().items()}
        others = [layers[r].state_dict() for r in rs]
        params = dict(layers[p].named_parameters())
        for name, theta_p in base.items():
            if name not in params or not theta_p.is_floating_point():
                continue
            if is_norm_param(name) and not settings.merge_norms:
                skipped_norms += 1
                continue
            merged = merge_tensor(
                theta_p, [o[name] for o in others], sparsify, settings.scale, settings.scale_by_count
            )
            params[name].copy_(merged)
    LOG.info("%s merge: %s", method, {p: rs for p, rs in sorted(groups.items())})
    return MergeInfo(
        method=method,
        targets=targets,
        details={
            "density": settings.density,
            "scale": settings.scale,
            "scale_by_count": settings.scale_by_count,
            "merge_norms": settings.merge_norms,
            "norm_tensors_skipped": skipped_norms,
        },
    )
