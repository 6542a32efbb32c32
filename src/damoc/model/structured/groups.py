"""Dependency groups: which rows and columns of a decoder layer must be removed together.

* an MLP channel j: row j of ``gate_proj`` and ``up_proj`` (and their bias), column j of ``down_proj``;
* a query head h: rows ``h*d:(h+1)*d`` of ``q_proj`` (and bias), the same columns of ``o_proj``;
* a KV group g: rows ``g*d:(g+1)*d`` of ``k_proj`` and ``v_proj`` plus every query head that reads it
  (heads ``g*r .. g*r+r-1`` with ``r = n_heads / n_kv``), so grouped-query attention stays consistent.

Query heads are pruned *uniformly per KV group* (every group keeps the same number), so the result is
described by a standard config: ``num_key_value_heads`` KV heads, ``num_attention_heads`` a multiple
of it, ``head_dim`` unchanged.

Phi-3 fuses q/k/v into one ``qkv_proj`` and gate/up into one ``gate_up_proj``; its layers are read as
the same logical projections (the row blocks of the fused weights), so one set of group rules serves
both layouts.
"""

from __future__ import annotations

from collections.abc import Callable
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


Scorer = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def _out_rows(
    lin: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
) -> nn.Linear:
    """A new Linear with only ``rows`` (outputs) and ``cols`` (inputs) of ``lin``."""
    w = lin.weight.data
    if rows is not None:
        w = w.index_select(0, rows.to(w.device))
    if cols is not None:
        w = w.index_select(1, cols.to(w.device))
    new = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None, device=w.device, dtype=w.dtype)
    new.weight.data.copy_(w)
    if lin.bias is not None:
        b = lin.bias.data if rows is None else lin.bias.data.index_select(0, rows.to(w.device))
        new.bias.data.copy_(b)
    return new


@dataclass
class LayerModules:
    """The linear modules of one decoder layer that structured pruning touches (separate projections).

    The rest of the pruning code sees every layout through the seven *logical* projections q/k/v/o and
    gate/up/down: :meth:`element_scores` gives a score tensor per logical weight, :meth:`logical_sizes`
    their shapes, :meth:`prune` slices the real modules.
    """

    attn: nn.Module
    mlp: nn.Module

    def linear(self, name: str) -> nn.Linear:
        owner = self.mlp if name in MLP_NAMES else self.attn
        return getattr(owner, name)

    def linears(self) -> dict[str, nn.Linear]:
        """The real modules, by attribute name."""
        return {n: self.linear(n) for n in ATTN_NAMES + MLP_NAMES}

    def element_scores(self, fn: Scorer) -> dict[str, torch.Tensor | None]:
        """``fn(param, grad)`` per logical weight and bias ('q_proj.weight', ..., None for no bias)."""
        out: dict[str, torch.Tensor | None] = {}
        for name, lin in self.linears().items():
            out[f"{name}.weight"] = fn(lin.weight, lin.weight.grad)
            out[f"{name}.bias"] = None if lin.bias is None else fn(lin.bias, lin.bias.grad)
        return out

    def logical_sizes(self) -> dict[str, tuple[int, int, bool]]:
        """(out_features, in_features, has_bias) of each logical projection."""
        return {
            n: (lin.out_features, lin.in_features, lin.bias is not None) for n, lin in self.linears().items()
        }

    def prune(
        self, shape: AttentionShape, groups: torch.Tensor, heads: torch.Tensor, channels: torch.Tensor
    ) -> None:
        """Slice the layer in place to the kept KV groups, query heads and MLP channels."""
        hd = shape.head_dim
        q, kv = head_rows(heads, hd), head_rows(groups, hd)
        a, m = self.attn, self.mlp
        a.q_proj = _out_rows(a.q_proj, rows=q)
        a.k_proj = _out_rows(a.k_proj, rows=kv)
        a.v_proj = _out_rows(a.v_proj, rows=kv)
        a.o_proj = _out_rows(a.o_proj, cols=q)
        m.gate_proj = _out_rows(m.gate_proj, rows=channels)
        m.up_proj = _out_rows(m.up_proj, rows=channels)
        m.down_proj = _out_rows(m.down_proj, cols=channels)
        _set_counts(a, m, len(heads), len(groups), len(channels))


def _set_counts(attn: nn.Module, mlp: nn.Module, n_heads: int, n_kv: int, inter: int) -> None:
    """Per-module copies of the sizes that some architectures read in forward."""
    if hasattr(attn, "num_key_value_groups"):
        attn.num_key_value_groups = n_heads // n_kv
    if hasattr(attn, "num_key_value_heads"):
        attn.num_key_value_heads = n_kv
    if hasattr(attn, "num_heads"):
        attn.num_heads = n_heads
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = inter


@dataclass
class FusedLayerModules(LayerModules):
    """Phi-3's layout: one ``qkv_proj`` (rows: q heads, then k heads, then v heads) and one
    ``gate_up_proj`` (rows: gate channels, then up channels), seen as the seven logical projections."""

    shape: AttentionShape | None = None

    def linears(self) -> dict[str, nn.Linear]:
        return {
            "qkv_proj": self.attn.qkv_proj,
            "o_proj": self.attn.o_proj,
            "gate_up_proj": self.mlp.gate_up_proj,
            "down_proj": self.mlp.down_proj,
        }

    def _qkv_split(self) -> tuple[int, int]:
        sh = self.shape
        return sh.n_heads * sh.head_dim, sh.n_kv * sh.head_dim

    def element_scores(self, fn: Scorer) -> dict[str, torch.Tensor | None]:
        qn, kn = self._qkv_split()
        inter = self.mlp.down_proj.in_features
        out: dict[str, torch.Tensor | None] = {}
        for real, parts in (
            ("qkv_proj", (("q_proj", 0, qn), ("k_proj", qn, qn + kn), ("v_proj", qn + kn, qn + 2 * kn))),
            ("gate_up_proj", (("gate_proj", 0, inter), ("up_proj", inter, 2 * inter))),
        ):
            lin = self.linears()[real]
            w = fn(lin.weight, lin.weight.grad)
            b = None if lin.bias is None else fn(lin.bias, lin.bias.grad)
            for name, lo, hi in parts:
                out[f"{name}.weight"] = w[lo:hi]
                out[f"{name}.bias"] = None if b is None else b[lo:hi]
        for name in ("o_proj", "down_proj"):
            lin = self.linears()[name]
            out[f"{name}.weight"] = fn(lin.weight, lin.weight.grad)
            out[f"{name}.bias"] = None if lin.bias is None else fn(lin.bias, lin.bias.grad)
        return out

    def logical_sizes(self) -> dict[str, tuple[int, int, bool]]:
        qn, kn = self._qkv_split()
        qkv, gu = self.attn.qkv_proj, self.mlp.gate_up_proj
        o, down = self.attn.o_proj, self.mlp.down_proj
        inter = down.in_features
        qb, gb = qkv.bias is not None, gu.bias is not None
        return {
            "q_proj": (qn, qkv.in_features, qb),
            "k_proj": (kn, qkv.in_features, qb),
            "v_proj": (kn, qkv.in_features, qb),
            "o_proj": (o.out_features, o.in_features, o.bias is not None),
            "gate_proj": (inter, gu.in_features, gb),
            "up_proj": (inter, gu.in_features, gb),
            "down_proj": (down.out_features, inter, down.bias is not None),
        }

    def prune(
        self, shape: AttentionShape, groups: torch.Tensor, heads: torch.Tensor, channels: torch.Tensor
    ) -> None:
        hd = shape.head_dim
        qn, kn = self._qkv_split()
        q, kv = head_rows(heads, hd), head_rows(groups, hd)
        a, m = self.attn, self.mlp
        inter = m.down_proj.in_features
        a.qkv_proj = _out_rows(a.qkv_proj, rows=torch.cat([q, qn + kv, qn + kn + kv]))
        a.o_proj = _out_rows(a.o_proj, cols=q)
        m.gate_up_proj = _out_rows(m.gate_up_proj, rows=torch.cat([channels, inter + channels]))
        m.down_proj = _out_rows(m.down_proj, cols=channels)
        _set_counts(a, m, len(heads), len(groups), len(channels))
        self.shape = AttentionShape(len(heads), len(groups), hd)


def _is_linear(obj, names) -> bool:
    return obj is not None and all(isinstance(getattr(obj, n, None), nn.Linear) for n in names)


def layer_modules(
    layer: nn.Module, model_type: str = "?", shape: AttentionShape | None = None
) -> LayerModules:
    """Find the projections of a layer (separate q/k/v/o and gate/up/down, or Phi-3's fused qkv_proj and
    gate_up_proj); a clear error for other layouts. ``shape`` is needed to split a fused qkv_proj."""
    attn = getattr(layer, "self_attn", None)
    mlp = getattr(layer, "mlp", None)
    if _is_linear(attn, ATTN_NAMES) and _is_linear(mlp, MLP_NAMES):
        return LayerModules(attn=attn, mlp=mlp)
    if _is_linear(attn, ("qkv_proj", "o_proj")) and _is_linear(mlp, ("gate_up_proj", "down_proj")):
        if shape is None:
            raise DamocError("a fused qkv_proj needs the attention shape to be split")
        mods = FusedLayerModules(attn=attn, mlp=mlp, shape=shape)
        qn, kn = mods._qkv_split()
        if (
            attn.qkv_proj.out_features != qn + 2 * kn
            or mlp.gate_up_proj.out_features != 2 * mlp.down_proj.in_features
        ):
            raise DamocError(f"the fused projections of this '{model_type}' layer do not match its config")
        return mods
    raise DamocError(
        f"structured pruning needs separate q/k/v/o and gate/up/down projections, or Phi-3's fused "
        f"qkv_proj and gate_up_proj; a '{model_type}' layer has neither "
        "(supported: llama, mistral, qwen2, qwen3, gemma3_text, phi3)"
    )


def attention_shape(config) -> AttentionShape:
    n_heads = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_heads)
    if n_heads % n_kv:
        raise DamocError(f"num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv}")
    return AttentionShape(n_heads, n_kv, head_dim)
