"""``magnitude``: TIES-style trim: each task vector keeps its top ``density`` fraction by magnitude."""

from __future__ import annotations

from damoc.model.merge.base import MergeContext, MergeInfo
from damoc.model.merge.task_vector import merge_task_vectors, trim_top


def merge_magnitude(model, removed: list[int], ctx: MergeContext) -> MergeInfo:
    s = ctx.settings
    return merge_task_vectors(model, removed, s, lambda tau: trim_top(tau, s.density), "magnitude")
