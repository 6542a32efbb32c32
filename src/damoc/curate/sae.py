"""A TopK sparse autoencoder (Gao et al. 2024): a plain ``nn.Module`` with a config dataclass.

z = TopK(W_enc (s * x - b_dec) + b_enc), x_hat = (W_dec z + b_dec) / s, with unit-norm decoder rows
and a pre-encoder bias ``b_dec``. ``s`` is a fixed input scale that makes the mean squared norm of
the training activations equal to ``d_model`` (set once from data, stored as a buffer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class SAEConfig:
    d_model: int
    expansion: int = 16  # width = expansion * d_model
    k: int = 32  # active latents per token
    seed: int = 0

    @property
    def width(self) -> int:
        return self.expansion * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)


class TopKSAE(nn.Module):
    def __init__(self, cfg: SAEConfig):
        super().__init__()
        if cfg.k < 1 or cfg.k > cfg.width:
            raise ValueError(f"k must be in [1, width={cfg.width}], got {cfg.k}")
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        w_dec = torch.randn(cfg.width, cfg.d_model, generator=g)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.t().clone())  # tied initialisation
        self.b_enc = nn.Parameter(torch.zeros(cfg.width))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_model))
        self.register_buffer("input_scale", torch.ones(()))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.input_scale - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse codes: exactly ``k`` entries per row may be non-zero (ReLU of the top-k pre-activations)."""
        pre = self.pre_acts(x)
        vals, idx = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.W_dec + self.b_dec) / self.input_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_grads(self) -> None:
        """Drop the gradient component along each decoder row (keeps rows on the unit sphere)."""
        if self.W_dec.grad is None:
            return
        w = self.W_dec.data
        g = self.W_dec.grad
        g -= (g * w).sum(1, keepdim=True) * w
