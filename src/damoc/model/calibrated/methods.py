"""The registry of calibrated compression methods and the records they return.

A method is a function ``(weight (out, in), H (in, in), spec) -> LayerResult``: tensors in,
tensors out. ``family`` is ``"prune"`` (spec: PruneSpec) or ``"quantize"`` (spec: QuantSpec).
:data:`METHODS` lists every method (its module is imported on first use); docs/calibrated.md
describes each.
Optional attributes on the function: ``needs_calibration = False`` (no data is run; H is None) and
``statistic = "diagonal"`` (H is passed as its diagonal vector ``Σ x²``, which is cheaper to gather).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from damoc.registry import Entry, Registry


@dataclass
class QuantPayload:
    """Integer codes and per-group parameters: ``W[:, j] = scales[:, g_idx[j]] * (codes[:, j] - zeros[:, g_idx[j]])``."""

    codes: torch.Tensor  # (out, in) uint8, values in [0, 2**bits - 1]
    scales: torch.Tensor  # (out, n_groups) float32
    zeros: torch.Tensor  # (out, n_groups) float32 (integer-valued)
    g_idx: torch.Tensor  # (in,) int32, the group of each input column
    bits: int

    def dequantize(self) -> torch.Tensor:
        g = self.g_idx.long()
        return self.scales[:, g] * (self.codes.float() - self.zeros[:, g])


@dataclass
class LayerResult:
    weight: torch.Tensor  # the compressed weight, same shape and dtype as the input weight
    mask: torch.Tensor | None = None  # bool (out, in), True = kept (pruning methods)
    quant: QuantPayload | None = None  # quantization methods


Method = Callable[[torch.Tensor, torch.Tensor, Any], LayerResult]
METHODS: Registry[Method] = Registry(
    "calibration method",
    [
        Entry(
            "magnitude",
            "damoc.model.calibrated.magnitude:magnitude",
            family="prune",
            help="|W| compared across the whole layer (no calibration)",
        ),
        Entry(
            "sparsegpt",
            "damoc.model.calibrated.sparsegpt:sparsegpt",
            family="prune",
            help="OBS pruning with weight updates (Hessian-based)",
        ),
        Entry(
            "wanda",
            "damoc.model.calibrated.wanda:wanda",
            family="prune",
            help="|W|·‖X‖ per output row (no weight update)",
        ),
        Entry(
            "rtn",
            "damoc.model.calibrated.quant:rtn",
            family="quantize",
            help="round-to-nearest per group (no calibration; baseline)",
        ),
        Entry(
            "gptq",
            "damoc.model.calibrated.gptq:gptq",
            family="quantize",
            help="OBS quantization with error feedback (Hessian-based)",
        ),
    ],
)


def method_family(name: str) -> str:
    return METHODS.entry(name).family or "prune"
