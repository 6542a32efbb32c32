"""Dependency groups: which rows and columns of a decoder layer must be removed together.

* an MLP channel j: row j of ``gate_proj`` and ``up_proj`` (and their bias), column j of ``down_proj``;
* a query head h: rows ``h*d:(h+1)*d`` of ``q_proj`` (and bias), the same columns of ``o_proj``;
* a KV group g: rows ``g*d:(g+1)*d`` of ``k_proj`` and ``v_proj`` plus every query head that reads it
  (heads ``g*r .. g*r+r-1`` with ``r = n_heads / n_kv``), so grouped-query attention stays consistent.

Query heads are pruned *uniformly per KV group* (every group keeps the same number), so the result is
described by a standard config: ``num_key_value_heads`` KV heads, ``num_attention_heads`` a multiple
of it, ``head_dim`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from damoc.errors import DamocError

ATTN_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_NAMES = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AttentionShape:
    n_heads: int
    n_kv: int
    head_dim: int

    @property
    def group_size(self) -> int:
        return self.n_heads // self.n_kv


def head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Row indices (of q_proj / k_proj / v_proj; columns of o_proj) covered by ``heads``, in order."""
    heads = torch.as_tensor(heads, dtype=torch.long)
    return (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).reshape(-1)


def query_heads_of_groups(groups: torch.Tensor, group_size: int) -> torch.Tensor:
    """Query heads that read KV groups ``groups``."""
    groups = torch.as_tensor(groups, dtype=torch.long)
    return (groups[:, None] * group_size + torch.arange(group_size)[None, :]).reshape(-1)


@dataclass
class LayerModules:
    """The linear modules of one decoder layer that structured pruning touches."""

    attn: nn.Module
    mlp: nn.Module

    def linear(self, name: str) -> nn.Linear:
        owner = self.mlp if name in MLP_NAMES else self.attn
        return getattr(owner, name)

    def linears(self) -> dict[str, nn.Linear]:
        return {n: self.linear(n) for n in ATTN_NAMES + MLP_NAMES}


def layer_modules(layer: nn.Module, model_type: str = "?") -> LayerModules:
    """Find q/k/v/o and gate/up/down of a layer; a clear error for fused or unknown layouts."""
    attn = getattr(layer, "self_attn", None)
    mlp = getattr(layer, "mlp", None)
    ok = (
        attn is not None
        and mlp is not None
        and all(isinstance(getattr(attn, n, None), nn.Linear) for n in ATTN_NAMES)
        and all(isinstance(getattr(mlp, n, None), nn.Linear) for n in MLP_NAMES)
    )
    if not ok:
        raise DamocError(
            f"structured pruning needs separate q/k/v/o and gate/up/down projections; a '{model_type}' "
            "layer does not have them (supported: llama, mistral, qwen2, qwen3, gemma3_text)"
        )
    return LayerModules(attn=attn, mlp=mlp)


def attention_shape(config) -> AttentionShape:
    n_heads = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_heads)
    if n_heads % n_kv:
        raise DamocError(f"num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv}")
    return AttentionShape(n_heads, n_kv, head_dim)
