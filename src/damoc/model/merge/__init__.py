"""Merging removed layers into the kept ones: one module per method, listed by name in :data:`MERGES`.

Every method is a function ``merge(model, removed, ctx) -> MergeInfo`` called on the FULL model before
the layers in ``removed`` are deleted; it changes only the kept layers' weights.
"""

from damoc.model.merge.base import MERGES, MergeContext, MergeInfo, MergeSettings, merge_targets

__all__ = ["MERGES", "MergeContext", "MergeInfo", "MergeSettings", "merge_targets"]
