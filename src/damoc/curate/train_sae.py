"""Training loop for :class:`~damoc.curate.sae.TopKSAE` on a matrix of activations (tokens x d_model)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import torch
from pydantic import Field

from damoc.config import StrictModel
from damoc.curate.sae import SAEConfig, TopKSAE
from damoc.logging_utils import progress

LOG = logging.getLogger(__name__)


class SAETrainConfig(StrictModel):
    """SAE shape and optimisation settings (defaults: 16x width, k = 32, as in FineScope's setting)."""

    expansion: int = Field(16, ge=1)
    k: int = Field(32, ge=1)
    steps: int = Field(400, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    seed: int = Field(0, ge=0)


@dataclass
class SAEStats:
    steps: int
    tokens: int
    final_mse: float
    fvu: float  # fraction of variance unexplained on the training activations
    dead_fraction: float  # latents that never fired in the last pass over the data
    wall_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def fraction_unexplained(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Residual sum of squares over total (centred) sum of squares: 0 is perfect, 1 is the mean."""
    resid = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
    return float(resid / total)


@torch.no_grad()
def sae_fvu(sae: TopKSAE, x: torch.Tensor, batch_size: int = 4096) -> float:
    x_hat = torch.cat([sae(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)])
    return fraction_unexplained(x, x_hat)


def train_sae(acts: torch.Tensor, cfg: SAETrainConfig | None = None) -> tuple[TopKSAE, SAEStats]:
    """Fit a TopK SAE to ``acts`` (N x d) with Adam; decoder rows stay unit-norm."""
    cfg = cfg or SAETrainConfig()
    if acts.dim() != 2 or len(acts) < 2:
        raise ValueError("train_sae needs an (N, d_model) matrix with N >= 2")
    t0 = time.perf_counter()
    acts = acts.float()
    d = acts.shape[1]
    sae = TopKSAE(
        SAEConfig(d_model=d, expansion=cfg.expansion, k=min(cfg.k, cfg.expansion * d), seed=cfg.seed)
    )
    with torch.no_grad():
        scale = (d / acts.pow(2).sum(1).mean().clamp_min(1e-12)).sqrt()
        sae.input_scale.fill_(float(scale))
        sae.b_dec.copy_((acts * scale).median(0).values)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    g = torch.Generator().manual_seed(cfg.seed)
    mse = float("nan")
    for _step in progress(range(cfg.steps), desc="train SAE", unit="step"):
        idx = torch.randint(0, len(acts), (min(cfg.batch_size, len(acts)),), generator=g)
        xb = acts[idx]
        z = sae.encode(xb)
        x_hat = z @ sae.W_dec + sae.b_dec  # in the scaled space, where the loss is measured
        loss = (x_hat - xb * scale).pow(2).sum(1).mean() / d
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grads()
        opt.step()
        sae.normalize_decoder()
        mse = float(loss.detach())
    with torch.no_grad():
        fired = torch.zeros(sae.cfg.width, dtype=torch.bool)
        for i in range(0, len(acts), 4096):
            fired |= (sae.encode(acts[i : i + 4096]) > 0).any(0)
    stats = SAEStats(
        steps=cfg.steps,
        tokens=cfg.steps * min(cfg.batch_size, len(acts)),
        final_mse=mse,
        fvu=sae_fvu(sae, acts),
        dead_fraction=1.0 - float(fired.float().mean()),
        wall_s=time.perf_counter() - t0,
    )
    LOG.info(
        "SAE width %d k %d: FVU %.3f, dead %.1f%%",
        sae.cfg.width,
        sae.cfg.k,
        stats.fvu,
        100 * stats.dead_fraction,
    )
    return sae, stats
