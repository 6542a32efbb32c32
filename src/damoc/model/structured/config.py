"""Settings of one structured-pruning run (every inferred number is a field with a default)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from damoc.config import StrictModel


class StructuredPruneConfig(StrictModel):
    """How much to prune, which units, and how to score them.

    ``ratio`` is the fraction of the model's total parameter count to remove (embeddings included in
    the count, never pruned). Attention and MLP units are pruned by the same fraction of their
    parameters (as LLM-Pruner does); the MLP channel count then absorbs the rounding of the head count,
    so the achieved ratio lands within one MLP channel per layer of the target.
    """

    ratio: float = Field(0.3, gt=0.0, lt=1.0)  # fraction of the total parameter count to remove
    importance: str = "taylor"  # registered in damoc.model.structured.importance.IMPORTANCE
    # query_heads: keep every KV head, remove the same number of query heads from each KV group.
    # kv_groups: remove whole KV groups together with the query heads that read them.
    attention_unit: Literal["query_heads", "kv_groups"] = "query_heads"
    prune_attention: bool = True  # false: keep every attention head; the MLP channels take the whole ratio
    channel_multiple: int = Field(1, ge=1)  # kept MLP width is rounded to a multiple of this
    samples: int = Field(32, ge=1)  # calibration texts for the gradients
    max_length: int = Field(256, ge=8)  # tokens per calibration text (longer ones are cut)
    batch_size: int = Field(4, ge=1)  # calibration texts per backward pass
    seed: int = Field(0, ge=0)  # seed of the gradient pass and of random importance scores
