"""Min-max integer quantization per group of input columns (asymmetric, or symmetric about zero) and the
round-to-nearest (RTN) baseline."""

from __future__ import annotations

import torch

from damoc.model.calibrated.config import QuantSpec
from damoc.model.calibrated.methods import LayerResult, QuantPayload


def minmax_params(x: torch.Tensor, bits: int, symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(scale, zero)`` of shape (rows, 1) over the columns of ``x``; the range always holds 0.

    Symmetric: the range is ``[-max|x|, max|x|]`` and the zero point the middle code ``2**(bits-1)``
    (as GPTQ's reference code does), so a kernel needs no zero point.
    """
    maxq = 2**bits - 1
    xmin = torch.clamp(x.min(dim=1, keepdim=True).values, max=0.0)
    xmax = torch.clamp(x.max(dim=1, keepdim=True).values, min=0.0)
    if symmetric:
        xmax = torch.maximum(-xmin, xmax)
        xmin = -xmax
    flat = (xmax - xmin) == 0
    xmin = torch.where(flat, xmin - 1.0, xmin)
    xmax = torch.where(flat, xmax + 1.0, xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, 2 ** (bits - 1)) if symmetric else torch.round(-xmin / scale)
    return scale, zero


def quantize_codes(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.clamp(torch.round(x / scale) + zero, 0, 2**bits - 1)


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return scale * (codes - zero)


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    return dequantize(quantize_codes(x, scale, zero, bits), scale, zero)


def group_index(n_in: int, group: int, perm: torch.Tensor | None = None) -> torch.Tensor:
    """Group of each input column; with ``perm`` (act-order) groups follow the permuted order."""
    pos = torch.arange(n_in)
    if perm is not None:
        pos = torch.empty_like(perm)
        pos[perm] = torch.arange(n_in, device=perm.device)
    return (pos // group).to(torch.int32)


def rtn(w: torch.Tensor, h: torch.Tensor | None, spec: QuantSpec) -> LayerResult:
    wf = w.detach().float()
    rows, cols = wf.shape
    group = spec.group(cols)
    n_groups = (cols + group - 1) // group
    codes = torch.zeros(rows, cols, device=wf.device)
    scales = torch.zeros(rows, n_groups, device=wf.device)
    zeros = torch.zeros(rows, n_groups, device=wf.device)
    for g in range(n_groups):
        sl = slice(g * group, min(cols, (g + 1) * group))
        s, z = minmax_params(wf[:, sl], spec.bits, spec.symmetric)
        codes[:, sl] = quantize_codes(wf[:, sl], s, z, spec.bits)
        scales[:, g], zeros[:, g] = s[:, 0], z[:, 0]
    payload = QuantPayload(codes.to(torch.uint8), scales, zeros, group_index(cols, group), spec.bits)
    return LayerResult(weight=payload.dequantize().to(w.dtype), quant=payload)


rtn.needs_calibration = False  # type: ignore[attr-defined]
