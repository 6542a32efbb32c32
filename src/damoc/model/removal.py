"""Remove decoder layers from an in-memory Hugging Face model so that it saves as a REAL checkpoint.

After :func:`remove_layers` the model's ``num_hidden_layers`` and every per-layer config list
(``layer_types``, sliding-window lists, anything of length ``num_hidden_layers`` in the text config)
are sliced, and per-layer index attributes (``layer_idx`` on attention and decoder layers) are
renumbered so the KV cache addresses the right slot. ``save_pretrained`` then writes a directory that
``AutoModelForCausalLM.from_pretrained`` loads with no missing or unexpected weights.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from torch import nn

from damoc.errors import DamocError
from damoc.model.arch import _get_attr, find_layers_path, text_config

LOG = logging.getLogger(__name__)

# Attributes on a layer's modules that hold the layer's position in the stack.
LAYER_INDEX_ATTRS = ("layer_idx", "layer_id", "layer_index", "layer_number")
# Top-level config lists that are never per-layer even when their length happens to match.
NOT_PER_LAYER = {"architectures", "eos_token_id", "bos_token_id", "pad_token_id", "auto_map", "tags"}
# Integer settings that count layers from the bottom ("the first k layers do X").
LAYER_COUNT_INTS = ("max_window_layers",)


def validate_removal(n_layers: int, remove: Sequence[int], protected: Sequence[int] = ()) -> list[int]:
    """Sorted unique layer indices, checked: in range, not protected, and at least one layer kept."""
    idx = sorted({int(i) for i in remove})
    bad = [i for i in idx if i < 0 or i >= n_layers]
    if bad:
        raise DamocError(f"layer {bad[0]} is out of range: the model has layers 0..{n_layers - 1}")
    hit = [i for i in idx if i in set(protected)]
    if hit:
        raise DamocError(f"layer {hit[0]} is protected (first and last layers are kept by default)")
    if len(idx) >= n_layers:
        raise DamocError(f"cannot remove {len(idx)} of {n_layers} layers: at least one must stay")
    return idx


def per_layer_config_keys(cfg, n_layers: int) -> list[str]:
    """Names of config attributes that hold one entry per layer."""
    keys = []
    for key, val in vars(cfg).items():
        if key.startswith("_") or key in NOT_PER_LAYER:
            continue
        if isinstance(val, (list, tuple)) and len(val) == n_layers:
            keys.append(key)
    return keys


def slice_config(cfg, keep: Sequence[int]) -> list[str]:
    """Slice the text config to the kept layers in place; returns the per-layer keys that were sliced."""
    n = int(cfg.num_hidden_layers)
    keys = per_layer_config_keys(cfg, n)
    for key in keys:
        val = getattr(cfg, key)
        sliced = [val[i] for i in keep]
        object.__setattr__(cfg, key, type(val)(sliced) if isinstance(val, tuple) else sliced)
    for key in LAYER_COUNT_INTS:
        val = getattr(cfg, key, None)
        if isinstance(val, int) and not isinstance(val, bool):
            object.__setattr__(cfg, key, sum(1 for i in keep if i < val))
    object.__setattr__(cfg, "num_hidden_layers", len(keep))
    return keys


def renumber_layer(layer: nn.Module, old: int, new: int) -> int:
    """Shift every layer-index attribute inside ``layer`` from ``old`` to ``new``; returns how many."""
    count = 0
    for mod in layer.modules():
        for attr in LAYER_INDEX_ATTRS:
            val = getattr(mod, attr, None)
            if isinstance(val, int) and not isinstance(val, bool):
                setattr(mod, attr, val - old + new)
                count += 1
    return count


def _set_layers(model: nn.Module, layers: nn.ModuleList) -> None:
    path = find_layers_path(model)
    parent_path, _, name = path.rpartition(".")
    parent = _get_attr(model, parent_path) if parent_path else model
    setattr(parent, name, layers)


def _configs(model: nn.Module) -> list:
    """The distinct config objects that describe the decoder stack (the model's and its text config)."""
    seen: list = []
    for cfg in (
        text_config(model.config),
        _get_attr(model, find_layers_path(model).rpartition(".")[0] + ".config"),
    ):
        if cfg is not None and all(cfg is not s for s in seen) and hasattr(cfg, "num_hidden_layers"):
            seen.append(cfg)
    return seen


def remove_layers(model: nn.Module, remove: Sequence[int], protected: Sequence[int] = ()) -> list[int]:
    """Delete the decoder layers ``remove`` in place; returns the kept original indices."""
    path = find_layers_path(model)
    layers = _get_attr(model, path)
    n = len(layers)
    idx = validate_removal(n, remove, protected)
    keep = [i for i in range(n) if i not in set(idx)]
    if not idx:
        return keep
    for new, old in enumerate(keep):
        renumber_layer(layers[old], old, new)
    _set_layers(model, nn.ModuleList([layers[i] for i in keep]))
    for cfg in _configs(model):
        if int(cfg.num_hidden_layers) != n:
            raise DamocError(f"config says {cfg.num_hidden_layers} layers but the model has {n}")
        sliced = slice_config(cfg, keep)
        LOG.debug("sliced per-layer config keys: %s", sliced)
    return keep


class PassThrough(nn.Module):
    """Stands in for a decoder layer and returns its hidden-state input unchanged."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


@contextlib.contextmanager
def skipping(model: nn.Module, skip: Sequence[int]) -> Iterator[nn.Module]:
    """Temporarily replace layers ``skip`` with pass-throughs (no KV cache use), restoring them after.

    Equivalent to removal for a forward pass with ``use_cache=False``; used to calibrate on the model
    as it will be after removal without touching its config.
    """
    layers = _get_attr(model, find_layers_path(model))
    saved = {i: layers[i] for i in skip}
    try:
        for i in saved:
            layers[i] = PassThrough()
        yield model
    finally:
        for i, layer in saved.items():
            layers[i] = layer
