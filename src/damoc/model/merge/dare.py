"""``dare``: each task-vector entry kept with probability ``density`` and rescaled by 1/density (seeded)."""

from __future__ import annotations

import torch

from damoc.model.merge.base import MergeContext, MergeInfo
from damoc.model.merge.task_vector import dare_drop, merge_task_vectors


def merge_dare(model, removed: list[int], ctx: MergeContext) -> MergeInfo:
    s = ctx.settings
    gen = torch.Generator().manual_seed(s.seed)
    info = merge_task_vectors(model, removed, s, lambda tau: dare_drop(tau, s.density, gen), "dare")
    info.details["seed"] = s.seed
    return info
