"""GPTQ (Frantar et al., 2022): quantize columns in order, spreading each column's rounding error over
the remaining columns through the Cholesky factor of ``H⁻¹``; per-group asymmetric min-max
parameters, optional act-order (columns by decreasing ``diag(H)``). Group parameters come from the
group's error-updated weights when the sweep reaches it, or, with ``static_groups``, from the original
weights of each group of original columns before the sweep."""

from __future__ import annotations

import torch

from damoc.model.calibrated.config import QuantSpec
from damoc.model.calibrated.methods import LayerResult, QuantPayload
from damoc.model.calibrated.obs import Rounder, damped_inverse_cholesky, handle_dead_inputs, obs_sweep
from damoc.model.calibrated.quant import group_index, minmax_params, quantize_codes


class _QuantRounder(Rounder):
    def __init__(
        self,
        spec: QuantSpec,
        w: torch.Tensor,
        original: torch.Tensor,
        perm: torch.Tensor | None,
        zero_mask: torch.Tensor | None = None,
    ):
        self.bits = spec.bits
        self.symmetric = spec.symmetric
        self.zero_mask = zero_mask  # (out, in) in sweep order: True where the weight must stay zero
        self.group = spec.group(w.shape[1])
        self.w = w  # replaced by the sweep's working weight in start_block
        rows, cols = w.shape
        n_groups = (cols + self.group - 1) // self.group
        self.codes = torch.zeros(rows, cols, device=w.device)
        self.scales = torch.zeros(rows, n_groups, device=w.device)
        self.zeros = torch.zeros(rows, n_groups, device=w.device)
        self.scale = self.zero = None
        self.static = spec.static_groups
        # the (original-order) group of each column in sweep order, for static groups
        self.col_group = (perm if perm is not None else torch.arange(cols, device=w.device)) // self.group
        if self.static:
            for g in range(n_groups):
                s, z = minmax_params(
                    original[:, g * self.group : (g + 1) * self.group], self.bits, self.symmetric
                )
                self.scales[:, g], self.zeros[:, g] = s[:, 0], z[:, 0]

    def start_block(self, w1: torch.Tensor, hinv1: torch.Tensor, col0: int, w: torch.Tensor) -> None:
        self.w = w

    def round(self, col: int, i: int, w1: torch.Tensor, hinv1: torch.Tensor) -> torch.Tensor:
        if self.static:
            g = int(self.col_group[col])
            self.scale, self.zero = self.scales[:, g : g + 1], self.zeros[:, g : g + 1]
        elif col % self.group == 0:
            # parameters from the group's current (error-updated) values
            in_block = w1[:, i : i + self.group]
            rest = self.group - in_block.shape[1]
            cur = (
                in_block
                if rest <= 0
                else torch.cat([in_block, self.w[:, col + in_block.shape[1] : col + self.group]], 1)
            )
            self.scale, self.zero = minmax_params(cur, self.bits, self.symmetric)
            g = col // self.group
            self.scales[:, g], self.zeros[:, g] = self.scale[:, 0], self.zero[:, 0]
        code = quantize_codes(w1[:, i : i + 1], self.scale, self.zero, self.bits)
        if self.zero_mask is not None:  # the zero point's code is exactly zero
            code = torch.where(self.zero_mask[:, col : col + 1], self.zero, code)
        self.codes[:, col] = code[:, 0]
        return (self.scale * (code - self.zero))[:, 0]


def gptq(w: torch.Tensor, h: torch.Tensor, spec: QuantSpec) -> LayerResult:
    zero_mask = (w.detach() == 0) if spec.keep_zeros else None
    w32, h32 = handle_dead_inputs(w.detach().float(), h.float())
    original = w32.clone() if spec.static_groups else w32
    perm = None
    if spec.act_order:
        perm = torch.argsort(torch.diagonal(h32), descending=True)
        w32 = w32[:, perm]
        h32 = h32[perm][:, perm]
        zero_mask = zero_mask[:, perm] if zero_mask is not None else None
    hinv = damped_inverse_cholesky(h32, spec.damp)
    rounder = _QuantRounder(spec, w32, original, perm, zero_mask)
    obs_sweep(w32, hinv, rounder, spec.block_size)
    codes = rounder.codes
    if perm is not None:
        inv = torch.argsort(perm)
        codes = codes[:, inv]
    g_idx = group_index(w.shape[1], rounder.group, None if spec.static_groups else perm)
    payload = QuantPayload(codes.to(torch.uint8), rounder.scales, rounder.zeros, g_idx, spec.bits)
    return LayerResult(weight=payload.dequantize().to(w.dtype), quant=payload)
