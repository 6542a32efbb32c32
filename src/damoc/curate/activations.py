"""Residual-stream activations of one decoder layer, per text (a forward hook; the rest of the model is skipped)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from damoc.errors import DamocError
from damoc.evaluate.likelihood import collate
from damoc.logging_utils import progress
from damoc.model.arch import decoder_layers


class _Stop(Exception):
    pass


def resolve_layer(model: nn.Module, layer: int | None) -> int:
    """``None`` means the middle layer; negative counts from the end."""
    n = len(decoder_layers(model))
    if layer is None:
        return n // 2
    idx = layer + n if layer < 0 else layer
    if not 0 <= idx < n:
        raise DamocError(f"layer {layer} is out of range for a model with {n} layers")
    return idx


@torch.no_grad()
def residual_activations(
    model: nn.Module,
    tok,
    texts: Sequence[str],
    layer: int | None = None,
    max_length: int = 128,
    batch_size: int = 8,
    drop_first: int = 1,
) -> list[torch.Tensor]:
    """One (n_tokens, d_model) tensor per text: the output of decoder layer ``layer``.

    The first ``drop_first`` positions are dropped (the first token's residual is an outlier
    "attention sink" in most LMs). Layers after ``layer`` are not run.
    """
    idx = resolve_layer(model, layer)
    block = decoder_layers(model)[idx]
    captured: dict[str, torch.Tensor] = {}

    def hook(_mod, _inp, out):
        captured["h"] = out[0] if isinstance(out, tuple) else out
        raise _Stop

    seqs = [tok(t, truncation=True, max_length=max_length)["input_ids"] or [0] for t in texts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    out: list[torch.Tensor | None] = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    handle = block.register_forward_hook(hook)
    try:
        for b in progress(range(0, len(order), batch_size), desc=f"activations L{idx}", unit="batch"):
            ids = order[b : b + batch_size]
            batch = collate([seqs[i] for i in ids], [0] * len(ids), pad)
            try:
                model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev))
            except _Stop:
                pass
            h = captured.pop("h").float().cpu()
            for j, i in enumerate(ids):
                n = len(seqs[i])
                start = min(drop_first, n - 1)
                out[i] = h[j, start:n].clone()
    finally:
        handle.remove()
    return [t for t in out if t is not None]
