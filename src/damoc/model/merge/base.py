"""What every merge method receives and returns, and the registry that names them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from damoc.config import StrictModel
from damoc.registry import Entry, Registry


class MergeSettings(StrictModel):
    """Knobs of the merge methods (each method reads the ones it uses)."""

    density: float = 0.2  # task-vector methods: fraction of each task vector kept
    scale: float = 1.0  # task-vector methods: λ in θ_p ← θ_p + λ·sparsify(τ)
    scale_by_count: bool = (
        False  # task-vector methods: λ/(k+1) when k removed layers fold into one kept layer
    )
    merge_norms: bool = True  # task-vector methods: norm weights follow the rule (False: left as they are)
    ridge: float = 1e-4  # linear: ridge strength relative to the mean eigenvalue of MᵀM, shrinking T toward I
    token_weight: Literal["uniform", "inverse_norm"] = "inverse_norm"  # linear: per-token weights of the fit
    fit_on_pruned: bool = True  # linear: fit each block on the model with the blocks below already folded
    refine_steps: int = 200  # linear, post-MLP-norm archs (Gemma3): Adam steps fitting T through the norm
    refine_lr: float = 1e-3  # linear: learning rate of those steps
    verify: bool = True  # linear: keep the fold only if calibration loss beats plain removal
    seed: int = 0  # dare: Bernoulli masks


@dataclass
class MergeContext:
    """Settings plus the calibration batches (``(input_ids, attention_mask)``) for methods that need data."""

    settings: MergeSettings
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()


@dataclass
class MergeInfo:
    """What a merge did: into which kept layer each removed layer went, and method-specific figures."""

    method: str
    targets: dict[int, int] = field(default_factory=dict)  # removed layer -> kept layer it merged into
    details: dict[str, Any] = field(default_factory=dict)


MergeFn = Callable[..., MergeInfo]
# Every merge method, in the order `--merge` lists them; docs/merging.md describes each.
MERGES: Registry[MergeFn] = Registry(
    "merge method",
    [
        Entry("none", "damoc.model.merge.none:merge_none", help="plain removal: kept layers untouched"),
        Entry(
            "magnitude",
            "damoc.model.merge.magnitude:merge_magnitude",
            family="task-vector",
            help="task vector trimmed to its top-density entries",
        ),
        Entry(
            "dare",
            "damoc.model.merge.dare:merge_dare",
            family="task-vector",
            help="task vector randomly dropped (DARE) and rescaled",
        ),
        Entry(
            "linear",
            "damoc.model.merge.linear:merge_linear",
            family="linear",
            help="ReplaceMe-style linear map folded into the down projection",
        ),
    ],
)


def merge_targets(n_layers: int, removed: Sequence[int]) -> dict[int, int]:
    """For each removed layer, the nearest kept layer before it (after it if none is before)."""
    gone = set(removed)
    kept = [i for i in range(n_layers) if i not in gone]
    out = {}
    for r in sorted(gone):
        before = [k for k in kept if k < r]
        out[r] = before[-1] if before else min(k for k in kept if k > r)
    return out


def contiguous_blocks(removed: Sequence[int]) -> list[tuple[int, int]]:
    """Removed layers as half-open runs ``[s, e)``, bottom-up."""
    blocks: list[tuple[int, int]] = []
    for i in sorted(set(removed)):
        if blocks and blocks[-1][1] == i:
            blocks[-1] = (blocks[-1][0], i + 1)
        else:
            blocks.append((i, i + 1))
    return blocks
