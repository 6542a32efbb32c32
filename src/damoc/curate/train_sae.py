"""Training loop for :class:`~damoc.curate.sae.TopKSAE` on a matrix of activations (tokens x d_model).

Each step computes every pre-activation once (one dense ``batch x d_model x width`` product) to find
the top ``k`` latents per row; the decoder (``embedding_bag``: a sum of ``k`` decoder rows) and the
gradients, written out by hand in :func:`topk_grads`, touch only those ``batch x k`` rows. The loss and
gradients equal those autograd gives for the dense form (``encode`` then ``z @ W_dec``), which a test
checks; the dense form costs about four ``batch x d_model x width`` products per step (encode, decode
and their backward passes) and a dense Adam over two such matrices, this one about one product.
"""

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

    expansion: int = Field(16, ge=1)  # SAE width (latents) = expansion x the model's hidden size
    k: int = Field(32, ge=1)  # latents kept active per token (TopK); capped at the SAE width
    steps: int = Field(400, ge=1)  # Adam steps
    batch_size: int = Field(512, ge=1)  # activation vectors (tokens) sampled per step
    lr: float = Field(1e-3, gt=0)  # Adam learning rate
    seed: int = Field(0, ge=0)  # seeds the SAE's initialisation, batch sampling and training-token subsample
    stats_tokens: int = Field(
        16384, ge=1
    )  # at most this many training tokens are re-encoded for FVU and dead latents


@dataclass
class SAEStats:
    steps: int
    tokens: int
    final_mse: float
    fvu: float  # fraction of variance unexplained on the training activations
    dead_fraction: float  # latents that never fired on the stats sample
    wall_s: float  # training plus the stats pass
    train_wall_s: float = 0.0  # the optimisation steps alone
    stats_tokens: int = 0  # tokens the FVU and dead fraction were measured on

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


@dataclass
class StepGrads:
    """Loss of one batch and the gradients of the four SAE tensors (encoder rows, not columns)."""

    loss: float
    enc_rows: torch.Tensor  # (width, d): gradient of W_enc transposed
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor


@torch.no_grad()
def topk_grads(
    enc_rows: torch.Tensor,
    b_enc: torch.Tensor,
    w_dec: torch.Tensor,
    b_dec: torch.Tensor,
    xb: torch.Tensor,
    k: int,
) -> StepGrads:
    """Loss = mean over rows of ||x_hat - x||^2 / d for a batch ``xb`` in the SAE's scaled space, and its
    gradients, computed through the ``k`` selected latents of each row only.

    ``enc_rows`` is W_enc transposed (one row per latent), so the selected rows are contiguous gathers.
    Only the encoder product that finds the top ``k`` is dense; the decoder and every gradient touch
    ``batch x k`` rows. The gradients equal those autograd gives for the dense form (tested).
    """
    n, d = xb.shape
    u = xb - b_dec
    vals, idx = (u @ enc_rows.t() + b_enc).topk(k, dim=-1)  # (n, k)
    act = torch.relu(vals)
    flat = idx.reshape(-1)
    x_hat = torch.nn.functional.embedding_bag(idx, w_dec, per_sample_weights=act, mode="sum") + b_dec
    r = x_hat - xb
    loss = float(r.pow(2).sum() / (n * d))
    g = r * (2.0 / (n * d))  # dL/dx_hat, (n, d)
    dec_sel = w_dec.index_select(0, flat).view(n, k, d)
    d_act = torch.bmm(dec_sel, g.unsqueeze(2)).squeeze(2)  # dL/d act, (n, k)
    d_pre = d_act * (vals > 0).to(d_act.dtype)
    g_dec = torch.zeros_like(w_dec).index_add_(0, flat, (act.unsqueeze(2) * g.unsqueeze(1)).reshape(-1, d))
    g_enc = torch.zeros_like(enc_rows).index_add_(
        0, flat, (d_pre.unsqueeze(2) * u.unsqueeze(1)).reshape(-1, d)
    )
    g_benc = torch.zeros_like(b_enc).index_add_(0, flat, d_pre.reshape(-1))
    enc_sel = enc_rows.index_select(0, flat).view(n, k, d)
    d_u = torch.bmm(d_pre.unsqueeze(1), enc_sel).squeeze(1)  # dL/du, (n, d)
    g_bdec = g.sum(0) - d_u.sum(0)  # b_dec is added to x_hat and subtracted from the input
    return StepGrads(loss, g_enc, g_benc, g_dec, g_bdec)


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
        scale = float((d / acts.pow(2).sum(1).mean().clamp_min(1e-12)).sqrt())
        sae.input_scale.fill_(scale)
        scaled = acts * scale  # the loss is measured in the scaled space
        sae.b_dec.copy_(scaled.median(0).values)
    enc_rows = torch.nn.Parameter(sae.W_enc.detach().t().contiguous())
    params = [enc_rows, sae.b_enc, sae.W_dec, sae.b_dec]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), fused=True)
    g = torch.Generator().manual_seed(cfg.seed)
    mse = float("nan")
    for _step in progress(range(cfg.steps), desc="train SAE", unit="step"):
        idx = torch.randint(0, len(scaled), (min(cfg.batch_size, len(scaled)),), generator=g)
        grads = topk_grads(enc_rows, sae.b_enc, sae.W_dec, sae.b_dec, scaled[idx], sae.cfg.k)
        for p, gp in zip(params, (grads.enc_rows, grads.b_enc, grads.W_dec, grads.b_dec), strict=True):
            p.grad = gp
        sae.remove_parallel_grads()
        opt.step()
        sae.normalize_decoder()
        mse = grads.loss
    with torch.no_grad():
        sae.W_enc.copy_(enc_rows.t())
    train_s = time.perf_counter() - t0
    sample = acts
    if len(acts) > cfg.stats_tokens:
        sample = acts[torch.randperm(len(acts), generator=g)[: cfg.stats_tokens]]
    with torch.no_grad():
        fired = torch.zeros(sae.cfg.width, dtype=torch.bool)
        for i in range(0, len(sample), 4096):
            fired |= (sae.encode(sample[i : i + 4096]) > 0).any(0)
    stats = SAEStats(
        steps=cfg.steps,
        tokens=cfg.steps * min(cfg.batch_size, len(acts)),
        final_mse=mse,
        fvu=sae_fvu(sae, sample),
        dead_fraction=1.0 - float(fired.float().mean()),
        wall_s=time.perf_counter() - t0,
        train_wall_s=train_s,
        stats_tokens=len(sample),
    )
    LOG.info(
        "SAE width %d k %d: FVU %.3f, dead %.1f%% (%d steps in %.1f s)",
        sae.cfg.width,
        sae.cfg.k,
        stats.fvu,
        100 * stats.dead_fraction,
        cfg.steps,
        train_s,
    )
    return sae, stats
