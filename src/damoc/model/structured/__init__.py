"""Structured pruning, LLM-Pruner style: dependency groups, Taylor importance, uniform per-layer sizes.

``groups`` says which rows/columns move together, ``importance`` scores them (tensors in, tensors out),
``prune`` plans the sizes and slices the model, ``save`` writes a loadable checkpoint.
"""

from damoc.model.structured.config import StructuredPruneConfig
from damoc.model.structured.prune import PruneReport, structured_prune
from damoc.model.structured.run import prune_to_dir
from damoc.model.structured.save import save_pruned

__all__ = ["StructuredPruneConfig", "PruneReport", "prune_to_dir", "save_pruned", "structured_prune"]
