"""``none``: plain removal; the kept layers are left as they are."""

from __future__ import annotations

from damoc.model.arch import decoder_layers
from damoc.model.merge.base import MergeContext, MergeInfo


def merge_none(model, removed: list[int], ctx: MergeContext) -> MergeInfo:
    del ctx
    decoder_layers(model)  # a clear error for a model whose layers cannot be found
    return MergeInfo(method="none")
