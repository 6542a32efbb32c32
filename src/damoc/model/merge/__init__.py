"""Merging removed layers into the kept ones: one module per method, registered by name in :data:`MERGES`.

Every method is a function ``merge(model, removed, ctx) -> MergeInfo`` called on the FULL model before
the layers in ``removed`` are deleted; it changes only the kept layers' weights.
"""

from damoc.model.merge.base import MERGES, MergeContext, MergeInfo, MergeSettings, merge_targets

# Importing the method modules registers them (order = the order `--merge` lists them in).
from damoc.model.merge import none as _none  # noqa: E402,F401  isort: skip
from damoc.model.merge import magnitude as _magnitude  # noqa: E402,F401  isort: skip
from damoc.model.merge import dare as _dare  # noqa: E402,F401  isort: skip
from damoc.model.merge import linear as _linear  # noqa: E402,F401  isort: skip

__all__ = ["MERGES", "MergeContext", "MergeInfo", "MergeSettings", "merge_targets"]
