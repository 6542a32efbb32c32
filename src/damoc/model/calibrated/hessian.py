"""Per-layer input statistics: H = (2/N) Σ x xᵀ per calibration source, and their cross-calibration mix.

Pure tensor code: the pipeline feeds it the inputs of each linear layer; nothing here knows about
hooks or models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass
class HessianStats:
    """Running ``Σ x xᵀ`` and token count of one linear layer's inputs from one source.

    With ``diagonal`` only ``diag(Σ x xᵀ) = Σ x²`` is kept (a vector): all that methods scoring by
    input-channel norms (Wanda) need, at O(in) memory and no Gram product.
    """

    sum_xxt: torch.Tensor  # (in, in) float32, or (in,) when diagonal
    n_tokens: int = 0

    @property
    def diagonal(self) -> bool:
        return self.sum_xxt.dim() == 1

    @classmethod
    def zeros(cls, n_in: int, device: torch.device | str = "cpu", diagonal: bool = False) -> HessianStats:
        shape = (n_in,) if diagonal else (n_in, n_in)
        return cls(torch.zeros(*shape, dtype=torch.float32, device=device), 0)

    def add(self, x: torch.Tensor) -> None:
        """Accumulate the rows of ``x`` (any leading shape, last dim = in features)."""
        x2 = x.reshape(-1, x.shape[-1]).float()
        self.add_gram(gram_of(x2, self.diagonal), x2.shape[0])

    def add_gram(self, gram: torch.Tensor, n: int) -> None:
        self.sum_xxt += gram
        self.n_tokens += int(n)

    def hessian(self) -> torch.Tensor:
        """``(2/N) Σ x xᵀ`` (zeros when no token was seen)."""
        if self.n_tokens == 0:
            return torch.zeros_like(self.sum_xxt)
        return self.sum_xxt * (2.0 / self.n_tokens)


def gram_of(x2: torch.Tensor, diagonal: bool = False) -> torch.Tensor:
    """``x2ᵀ x2`` of a (tokens, in) float matrix, or only its diagonal ``Σ x²`` per column."""
    return (x2 * x2).sum(0) if diagonal else x2.T @ x2


def mix_hessians(stats: Mapping[str, HessianStats], weights: Mapping[str, float]) -> torch.Tensor:
    """Cross-calibration: ``Σ_s w_s H_s`` with each ``H_s`` normalised by its own token count.

    With the two sources ``general``/``domain`` and weights ``1-α``/``α`` this is
    ``H = (1-α) H_general + α H_domain``.
    """
    missing = [s for s in weights if s not in stats]
    if missing:
        raise ValueError(f"no statistics for source(s) {missing}")
    out: torch.Tensor | None = None
    for name, w in weights.items():
        term = stats[name].hessian() * float(w)
        out = term if out is None else out + term
    if out is None:
        raise ValueError("no calibration source to mix")
    return out


def source_weights(alpha: float, has_general: bool, has_domain: bool) -> dict[str, float]:
    """Mixing weights for the general and domain sources; a single source gets weight 1."""
    if has_general and has_domain:
        return {"general": 1.0 - alpha, "domain": alpha}
    if has_general:
        return {"general": 1.0}
    if has_domain:
        return {"domain": 1.0}
    raise ValueError("no calibration source")


def activation_norms(h: torch.Tensor) -> torch.Tensor:
    """Per-input-channel ``‖X_j‖₂`` up to a constant factor: ``sqrt(diag(H))`` (Wanda's statistic).

    ``h`` is the full (in, in) matrix or already its diagonal (in,).
    """
    d = h if h.dim() == 1 else torch.diagonal(h)
    return torch.sqrt(torch.clamp(d, min=0.0))


def reconstruction_error(w: torch.Tensor, w_hat: torch.Tensor, h: torch.Tensor) -> float:
    """``tr(ΔW H ΔWᵀ)``: the layer's output error ``‖WX − ŴX‖²`` up to the factor N/2."""
    dw = (w.float() - w_hat.float()).to(h.dtype)
    return float(((dw @ h) * dw).sum())


def relative_error(w: torch.Tensor, w_hat: torch.Tensor, h: torch.Tensor) -> float:
    """Reconstruction error relative to the layer's output energy ``tr(W H Wᵀ)``."""
    base = float(((w.float() @ h) * w.float()).sum())
    return reconstruction_error(w, w_hat, h) / base if base > 0 else 0.0
