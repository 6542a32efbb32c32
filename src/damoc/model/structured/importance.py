"""Importance of dependency groups: element scores (tensors in, tensors out) summed per group.

Registered element scores: ``taylor`` = |w * dL/dw| (first-order Taylor, LLM-Pruner's element-wise
variant, gradients summed over the calibration batches), ``magnitude`` = |w| (data-free baseline),
``random`` (a control). Gradient accumulation (the plumbing) is :func:`accumulate_gradients`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from damoc.evaluate.likelihood import collate
from damoc.logging_utils import progress
from damoc.model.structured.groups import AttentionShape
from damoc.registry import Registry


@dataclass(frozen=True)
class ElementScore:
    fn: Callable[[torch.Tensor, torch.Tensor | None, torch.Generator], torch.Tensor]
    needs_grad: bool


IMPORTANCE: Registry[ElementScore] = Registry("importance method")


def _register(name: str, needs_grad: bool, help: str):
    def deco(fn):
        IMPORTANCE.register(name, help=help)(ElementScore(fn, needs_grad))
        return fn

    return deco


@_register("taylor", True, "first-order Taylor |w * dL/dw| on the calibration data")
def taylor_score(w: torch.Tensor, g: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    if g is None:
        raise ValueError("taylor importance needs gradients")
    return (w.detach().float() * g.float()).abs()


@_register("magnitude", False, "weight magnitude |w| (no data)")
def magnitude_score(w: torch.Tensor, g: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    return w.detach().float().abs()


@_register("random", False, "random scores (a control)")
def random_score(w: torch.Tensor, g: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(w.shape, generator=gen)


@dataclass
class LayerScores:
    """Group importances of one layer."""

    query_heads: torch.Tensor  # (n_kv, group_size)
    kv_groups: torch.Tensor  # (n_kv,)
    channels: torch.Tensor  # (intermediate,)


def _rows(s: torch.Tensor | None) -> torch.Tensor | None:
    return None if s is None else (s.sum(1) if s.dim() == 2 else s)


def group_scores(elem: dict[str, torch.Tensor | None], shape: AttentionShape) -> LayerScores:
    """Sum element scores per group. ``elem`` maps 'q_proj.weight', 'q_proj.bias', ... to score tensors
    of the parameter's shape (``None`` for an absent bias)."""

    def get(name: str) -> torch.Tensor | None:
        return elem.get(name)

    hd, nh, nkv = shape.head_dim, shape.n_heads, shape.n_kv
    q_rows = _rows(get("q_proj.weight"))
    for b in ("q_proj.bias",):
        if get(b) is not None:
            q_rows = q_rows + get(b)
    o_cols = get("o_proj.weight").sum(0)
    per_q = (q_rows + o_cols).view(nh, hd).sum(1)
    kv_rows = _rows(get("k_proj.weight")) + _rows(get("v_proj.weight"))
    for b in ("k_proj.bias", "v_proj.bias"):
        if get(b) is not None:
            kv_rows = kv_rows + get(b)
    per_kv = kv_rows.view(nkv, hd).sum(1)
    q_by_group = per_q.view(nkv, shape.group_size)
    ch = _rows(get("gate_proj.weight")) + _rows(get("up_proj.weight")) + get("down_proj.weight").sum(0)
    for b in ("gate_proj.bias", "up_proj.bias"):
        if get(b) is not None:
            ch = ch + get(b)
    return LayerScores(query_heads=q_by_group, kv_groups=per_kv + q_by_group.sum(1), channels=ch)


def accumulate_gradients(
    model: nn.Module,
    tok,
    texts: Sequence[str],
    params: Sequence[nn.Parameter],
    max_length: int,
    batch_size: int,
) -> int:
    """Sum dL/dw of the causal-LM loss over ``texts`` into ``p.grad`` for ``params`` only; returns tokens seen."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    seqs = [tok(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    seqs = [s for s in seqs if len(s) >= 2]
    if not seqs:
        raise ValueError("no calibration text with at least two tokens")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    n_tokens = 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    was_training = model.training
    model.eval()  # no dropout: the gradient of the deployed function
    with torch.enable_grad():
        for b in progress(range(0, len(order), batch_size), desc="gradients", unit="batch"):
            chunk = [seqs[i] for i in order[b : b + batch_size]]
            batch = collate(chunk, [0] * len(chunk), pad)
            out = model(**{k: v.to(dev) for k, v in batch.items()})
            out.loss.backward()
            n_tokens += int(batch["attention_mask"].sum())
    model.train(was_training)
    for p in params:
        p.requires_grad_(False)
    return n_tokens
