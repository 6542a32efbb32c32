"""A sparse autoencoder on one layer's activations: a plain ``nn.Module`` with a config dataclass.

The encoder, for an input row x (``d_model``)::

    u = s * norm(x) - b_dec * apply_b_dec_to_input
    pre = u @ W_enc + b_enc                     (times ||W_dec row|| with rescale_acts_by_decoder_norm)
    z = TopK(pre) / ReLU(pre) / JumpReLU(pre, threshold)       (``activation``)
    x_hat = (z @ W_dec + b_dec) / s

``s`` (``input_scale``) is a fixed scale set once from the training data so that the mean squared norm
of the scaled activations is ``d_model``; 1 for SAEs made elsewhere. ``TopK`` keeps the ``k`` largest
pre-activations and applies ReLU to them (Gao et al. 2024, arXiv 2406.04093, as FineScope uses);
``relu`` and ``jumprelu`` exist so that SAEs trained by other tools (sae-lens's ``standard`` and
``jumprelu`` architectures) can be read and used for curation. Training (``train_sae``) makes TopK SAEs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

Activation = Literal["topk", "relu", "jumprelu"]


@dataclass
class SAEConfig:
    d_model: int
    expansion: int = 16  # width = expansion * d_model, unless d_sae is given
    k: int = 32  # active latents per token (topk)
    seed: int = 0
    d_sae: int | None = None  # an explicit width (SAEs read from disk)
    activation: Activation = "topk"
    apply_b_dec_to_input: bool = True  # subtract b_dec from the (scaled) input before encoding
    rescale_acts_by_decoder_norm: bool = False  # topk: scale pre-activations by the decoder row norms

    @property
    def width(self) -> int:
        return self.d_sae if self.d_sae is not None else self.expansion * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)


class TopKSAE(nn.Module):
    """The SAE (TopK by default; see the module docstring for the other activations)."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        if cfg.activation == "topk" and (cfg.k < 1 or cfg.k > cfg.width):
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
        if cfg.activation == "jumprelu":
            self.register_buffer("threshold", torch.zeros(cfg.width))

    def scaled_input(self, x: torch.Tensor) -> torch.Tensor:
        u = x * self.input_scale
        return u - self.b_dec if self.cfg.apply_b_dec_to_input else u

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.scaled_input(x) @ self.W_enc + self.b_enc
        if self.cfg.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        return pre

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations; with ``topk`` at most ``k`` per row are non-zero (ReLU of the top k)."""
        pre = self.pre_acts(x)
        if self.cfg.activation == "relu":
            return torch.relu(pre)
        if self.cfg.activation == "jumprelu":
            return torch.relu(pre) * (pre > self.threshold).to(pre.dtype)
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


SAE = TopKSAE  # the general name; TopK is what damoc trains
