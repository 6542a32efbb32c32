"""Writing a quantized model in the compressed-tensors ``pack-quantized`` format: the format llm-compressor
writes, vLLM serves with its int4/int8 weight-only kernels and transformers loads.

damoc's payloads hold unsigned codes ``c`` in ``[0, 2**b - 1]`` with ``W = s * (c - z)``. compressed-tensors
keeps signed integers ``q = c - 2**(b-1)`` and zero points ``zp = z - 2**(b-1)`` (the same ``W = s * (q - zp)``).
The package does the packing: each quantized layer gets its scheme and its scale/zero point as
compressed-tensors expects them, its weight stays the dequantized one (so the package's rounding gives back
exactly our codes), and :class:`compressed_tensors.compressors.ModelCompressor` packs the weights and writes
``quantization_config`` into ``config.json``.

Limits of the format (checked before any work is done): the input size of every quantized layer must be a
multiple of the group size (a group size wider than every layer means a scale per output row), one scheme
serves every layer (transformers decompresses all dense layers with one), and act-order with groups in
sweep order (a column-to-group index) is not carried any more: act-order needs ``static_groups``, which
compressed-tensors calls ``actorder: weight``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from damoc.errors import DamocError
from damoc.model.arch import decoder_layers, find_layers_path, save_model
from damoc.model.calibrated.config import QuantSpec
from damoc.model.calibrated.methods import QuantPayload

COMPRESSED = "compressed-tensors"
DENSE = "dense"
FORMATS = (COMPRESSED, DENSE)
PACKED_FORMAT = "pack-quantized"


def _args_for(spec: QuantSpec, n_in: int) -> dict[str, Any] | str:
    """The compressed-tensors weight arguments of a layer with ``n_in`` inputs, or why it cannot have any."""
    args: dict[str, Any] = {"num_bits": spec.bits, "type": "int", "symmetric": spec.symmetric}
    group = spec.group(n_in)
    if spec.group_size <= 0 or group > n_in:
        args["strategy"] = "channel"  # one group per row: a scale (and zero point) per output channel
    elif n_in % group == 0:
        args.update(strategy="group", group_size=group)
    else:
        return f"{n_in} inputs, not a multiple of the group size {group}"
    if spec.act_order:
        args["actorder"] = "weight"
    return args


def _suggest_group(sizes: list[int], group: int) -> int | None:
    """The largest group size <= ``group`` that divides every input size (a power of two of at least 16)."""
    g = math.gcd(*sizes)
    while g > group:
        g //= 2
    best = 1 << (g.bit_length() - 1) if g > 0 else 0
    while best >= 16 and any(n % best for n in sizes):
        best //= 2
    return best if best >= 16 else None


def quantized_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The linears the calibrated pipeline quantizes: every ``nn.Linear`` inside a decoder block."""
    prefix = find_layers_path(model)
    out = {}
    for idx, block in enumerate(decoder_layers(model)):
        for name, mod in block.named_modules():
            if isinstance(mod, nn.Linear):
                out[f"{prefix}.{idx}.{name}"] = mod
    return out


def check_exportable(model: nn.Module, spec: QuantSpec) -> None:
    """Raise a one-line error when the model's quantized layers cannot be written as ``pack-quantized``."""
    if spec.act_order and not spec.static_groups:
        raise DamocError(
            "--act-order without --static-groups puts columns in groups by sweep order (a column-to-group "
            "index), which the compressed-tensors format no longer stores: add --static-groups, or use "
            "--format dense"
        )
    sizes = {name: lin.in_features for name, lin in quantized_linears(model).items()}
    hint = _suggest_group(sorted(set(sizes.values())), spec.group(max(sizes.values())))
    try_ = f"try --group-size {hint}, or " if hint else "try "
    kinds: dict[str, str] = {}
    for name, n_in in sizes.items():
        args = _args_for(spec, n_in)
        if isinstance(args, str):
            raise DamocError(
                f"{name} has {args}: the compressed-tensors format needs whole groups ({try_}--format dense)"
            )
        kinds.setdefault(args["strategy"], name)
    if len(kinds) > 1:  # transformers decompresses every dense layer with one scheme
        raise DamocError(
            f"{kinds['channel']} has fewer inputs than the group size {spec.group_size}, which other layers "
            f"are quantized in: the compressed-tensors output needs one scheme for all ({try_}--format dense)"
        )


@torch.no_grad()
def attach_quantization(model: nn.Module, payloads: dict[str, QuantPayload], spec: QuantSpec):
    """Give each quantized layer its compressed-tensors scheme, scale and zero point; returns the
    ``ModelCompressor`` that packs them. The weights must be the payloads' dequantized values."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
        apply_quantization_config,
    )

    names = list(payloads)
    args = _args_for(spec, model.get_submodule(names[0]).in_features)  # one for all: check_exportable
    # the scheme targets every Linear; those left unquantized (lm_head) are listed under ignore
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**args))
    cfg = QuantizationConfig(config_groups={"group_0": scheme})
    modules = [model.get_submodule(n) for n in names]
    apply_quantization_config(model, cfg, show_progress=False, allowed_modules=modules)
    for name, p in payloads.items():
        mod = model.get_submodule(name)
        half = 2 ** (p.bits - 1)
        if not torch.equal(p.g_idx.long(), torch.arange(p.g_idx.numel()) // spec.group(p.g_idx.numel())):
            raise DamocError(f"{name}: its columns are not in contiguous groups; use --format dense")
        mod.weight_scale.data.copy_(p.scales.to(mod.weight_scale.dtype).reshape(mod.weight_scale.shape))
        zp = (p.zeros - half).round().to(mod.weight_zero_point.dtype)
        mod.weight_zero_point.data.copy_(zp.reshape(mod.weight_zero_point.shape))
    return ModelCompressor.from_pretrained_model(model, PACKED_FORMAT)


def _quietly(fn, *args, **kwargs):
    """Run ``fn`` with transformers' progress bars off (compressed-tensors draws its own per layer)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return fn(*args, **kwargs)
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def save_compressed(
    model: nn.Module, out: str | Path, payloads: dict[str, QuantPayload], spec: QuantSpec, dtype: torch.dtype
) -> None:
    """Pack the quantized layers (compressed-tensors), cast the rest to ``dtype`` and write the checkpoint."""
    compressor = attach_quantization(model, payloads, spec)
    _quietly(compressor.compress_model, model)  # packs from the float32 weights: the codes come back exactly
    model.to(dtype)  # scales, embeddings, norms and unquantized layers; packed ints stay ints
    model.config.dtype = dtype
    _quietly(model.save_pretrained, str(out), safe_serialization=True)
    compressor.update_config(str(out))


def save_dense(model: nn.Module, out: str | Path, dtype: torch.dtype) -> None:
    """Plain weights (pruned zeros, or dequantized values) in ``dtype``: every loader reads them. The
    in-memory model keeps its dtype (the weights are cast on the way out)."""
    _quietly(save_model, model, out, dtype)
