"""``linear``: ReplaceMe-style linear fold (arXiv 2505.02819), training-free.

For each removed contiguous block [s, e) with kept layer p = s − 1 before it: run calibration text, take
p's MLP output M (the term the layer adds to the residual) and the residual R beside it (output of
p = R + M), and the input H_e of layer e in the ORIGINAL model (the final hidden state when e = L).
Solve T = argmin ‖M·T − (H_e − R)‖² + λ‖T − I‖² (ridge toward the identity, so λ → ∞ is plain
removal) and fold it into p's down projection, W_down ← Tᵀ·W_down, so the checkpoint keeps its shape.

Where a norm follows the MLP (Gemma3's ``post_feedforward_layernorm``), M = norm(D) with D the down
projection's output, and no T folds exactly; there T is fitted THROUGH the norm by a few Adam steps
on ‖norm(D·T) − (H_e − R)‖², starting at T = I (plain removal), and folded the same way.

Safeguards: a block whose fitted error is not below plain removal's keeps T = I; with ``verify`` the
whole fold is kept only if the calibration loss of the pruned model beats plain removal's.

By default (``fit_on_pruned``) blocks are fitted bottom-up on the model whose lower blocks are already
removed and folded, against the full model's hidden states, so each fold also corrects the error that
the folds below left; otherwise they are fitted independently on the full model and folded top-down.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from damoc.errors import DamocError
from damoc.logging_utils import progress
from damoc.model.arch import decoder_layers, model_device
from damoc.model.importance import _hidden_arg, _hidden_out
from damoc.model.merge.base import MergeContext, MergeInfo, contiguous_blocks
from damoc.model.removal import skipping

LOG = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------- math


def fit_stats(m: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Sufficient statistics of ‖M·T − Y‖² around T = I: A = MᵀM, B = Mᵀ(Y − M), C = ‖Y − M‖² (float64)."""
    m64, y64 = m.double(), y.double()
    resid = y64 - m64
    return m64.T @ m64, m64.T @ resid, float((resid * resid).sum())


def ridge_solve(a: torch.Tensor, b: torch.Tensor, ridge: float) -> torch.Tensor:
    """T = I + (A + λI)⁻¹B with λ = ridge · trace(A)/d: least squares shrunk toward the identity."""
    d = a.shape[0]
    lam = ridge * float(torch.trace(a)) / d
    eye = torch.eye(d, dtype=a.dtype, device=a.device)
    delta = torch.linalg.solve(a + lam * eye + 1e-12 * eye, b)
    return eye + delta


def fold_error(a: torch.Tensor, b: torch.Tensor, c: float, t: torch.Tensor) -> float:
    """‖M·T − Y‖² from the statistics of :func:`fit_stats` (T = I gives C, plain removal)."""
    delta = t.double() - torch.eye(t.shape[0], dtype=torch.float64, device=t.device)
    return c - 2.0 * float((delta * b).sum()) + float((delta * (a @ delta)).sum())


def fold_into_down(weight: torch.Tensor, bias: torch.Tensor | None, t: torch.Tensor):
    """Weights of a linear layer whose output is the old output times T: W ← TᵀW, b ← Tᵀb."""
    tt = t.T.to(torch.float64)
    w = (tt @ weight.double()).to(weight.dtype)
    b = None if bias is None else (tt @ bias.double()).to(bias.dtype)
    return w, b


def token_weights(target: torch.Tensor, mode: str = "uniform") -> torch.Tensor:
    """Per-token weights of the fit, mean 1: ``uniform``, or ``inverse_norm`` = 1/‖h_e‖² (a cosine-like
    objective that keeps a few huge-norm tokens, e.g. attention sinks, from dominating the fit)."""
    if mode == "uniform":
        return torch.ones(target.shape[0])
    if mode == "inverse_norm":
        w = 1.0 / target.double().pow(2).sum(-1).clamp_min(1e-12)
        return (w / w.mean()).float()
    raise DamocError(f"unknown token weighting '{mode}' (known: uniform, inverse_norm)")


def refine_through_norm(
    d: torch.Tensor,
    y: torch.Tensor,
    norm_fn: Callable[[torch.Tensor], torch.Tensor],
    steps: int = 200,
    lr: float = 1e-3,
    batch_tokens: int = 4096,
    seed: int = 0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """T minimising mean w_t‖norm_fn(D·T) − Y‖² by Adam from T = I (minibatches of tokens)."""
    dim = d.shape[1]
    t = torch.eye(dim, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([t], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = d.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_tokens, n),), generator=gen) if n > batch_tokens else slice(None)
        with torch.enable_grad():
            sq = (norm_fn(d[idx] @ t) - y[idx]).pow(2).mean(-1)
            loss = (sq * weights[idx]).mean() if weights is not None else sq.mean()
            opt.zero_grad()
            loss.backward()
        opt.step()
    return t.detach()


def norm_error(
    d: torch.Tensor,
    y: torch.Tensor,
    norm_fn,
    t: torch.Tensor,
    weights: torch.Tensor | None = None,
    chunk: int = 8192,
) -> float:
    """Σ_t w_t‖norm_fn(D·T) − Y‖² over all tokens (chunked)."""
    total = 0.0
    with torch.no_grad():
        for i in range(0, d.shape[0], chunk):
            sq = (norm_fn(d[i : i + chunk] @ t) - y[i : i + chunk]).double().pow(2).sum(-1)
            if weights is not None:
                sq = sq * weights[i : i + chunk].double()
            total += float(sq.sum())
    return total


# ------------------------------------------------------------------------------------------- plumbing


class _Stop(Exception):
    """Raised by a hook to end a forward pass early, once everything needed is captured."""


def mlp_parts(layer: nn.Module) -> tuple[nn.Linear, nn.Module | None]:
    """The MLP's down projection and the norm applied after the MLP (None where the MLP adds directly)."""
    down = getattr(getattr(layer, "mlp", None), "down_proj", None)
    if not isinstance(down, nn.Linear):
        raise DamocError(
            f"the linear merge needs an MLP down projection (mlp.down_proj) in each layer; "
            f"{type(layer).__name__} has none (use --merge none)"
        )
    return down, getattr(layer, "post_feedforward_layernorm", None)


def _flat(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x.detach().float()[mask.bool()].cpu()


def _run_hooked(model, batches, handles, state: dict, desc: str) -> None:
    """Run every batch until a hook raises ``_Stop`` (the rest of the model is skipped); then drop the hooks."""
    dev = model_device(model)
    try:
        for ids, mask in progress(batches, desc=desc, unit="batch"):
            state["mask"] = mask.to(dev)
            try:
                model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def capture_targets(model, batches, ends: Sequence[int]) -> dict[int, torch.Tensor]:
    """The residual stream entering each layer in ``ends`` (end = L: the last layer's output), non-pad tokens."""
    layers = decoder_layers(model)
    n = len(layers)
    out: dict[int, list[torch.Tensor]] = {e: [] for e in ends}
    state: dict[str, torch.Tensor] = {}
    last = max(ends)
    handles = []

    def pre(e):
        def hook(_m, args, kwargs):
            out[e].append(_flat(_hidden_arg(args, kwargs), state["mask"]))
            if e == last:
                raise _Stop

        return hook

    def post(_m, _a, output):
        out[n].append(_flat(_hidden_out(output), state["mask"]))
        raise _Stop

    for e in ends:
        if e < n:
            handles.append(layers[e].register_forward_pre_hook(pre(e), with_kwargs=True))
    if n in out:
        handles.append(layers[n - 1].register_forward_hook(post))
    _run_hooked(model, batches, handles, state, "linear: targets")
    return {e: torch.cat(v) for e, v in out.items()}


@torch.no_grad()
def capture_mlp(model, batches, p: int) -> dict[str, torch.Tensor]:
    """At layer p: D (down projection output), M (what the MLP adds to the residual) and R = out − M."""
    layer = decoder_layers(model)[p]
    down, post_norm = mlp_parts(layer)
    got: dict[str, list[torch.Tensor]] = {"d": [], "m": [], "out": []}
    state: dict[str, torch.Tensor] = {}

    def keep(key, stop=False):
        def hook(_m, _a, output):
            got[key].append(_flat(_hidden_out(output), state["mask"]))
            if stop:
                raise _Stop

        return hook

    handles = [down.register_forward_hook(keep("d")), layer.register_forward_hook(keep("out", stop=True))]
    if post_norm is not None:
        handles.append(post_norm.register_forward_hook(keep("m")))
    _run_hooked(model, batches, handles, state, f"linear: layer {p}")
    d = torch.cat(got["d"])
    m = torch.cat(got["m"]) if post_norm is not None else d
    return {"d": d, "m": m, "r": torch.cat(got["out"]) - m}


@torch.no_grad()
def calibration_loss(model, batches) -> float:
    """Mean next-token cross-entropy (nats/token) over the non-pad calibration tokens."""
    dev = model_device(model)
    total, count = 0.0, 0
    for ids, mask in batches:
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False).logits[:, :-1]
        labels = ids[:, 1:].to(dev).masked_fill(mask[:, 1:].to(dev) == 0, -100)
        nll = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), reduction="sum"
        )
        total += float(nll)
        count += int((labels != -100).sum())
    return total / max(1, count)


def _fit_block(model, batches, p: int, target: torch.Tensor, settings) -> tuple[torch.Tensor, dict]:
    """Fit T for one block at kept layer p; returns (T, figures). T = I when fitting does not help."""
    cap = capture_mlp(model, batches, p)
    y = target - cap["r"]
    w = token_weights(target, settings.token_weight)
    _, post_norm = mlp_parts(decoder_layers(model)[p])
    if post_norm is None:
        sw = w.sqrt().unsqueeze(1)
        a, b, c = fit_stats(cap["m"] * sw, y * sw)
        t = ridge_solve(a, b, settings.ridge).float()
        err_plain, err_fold = c, fold_error(a, b, c, t)
        how = "closed form"
    else:
        norm = copy.deepcopy(post_norm).float().requires_grad_(False)  # no gradients into the model
        eye = torch.eye(y.shape[1])
        err_plain = norm_error(cap["d"], y, norm, eye, w)
        t = refine_through_norm(
            cap["d"], y, norm, settings.refine_steps, settings.refine_lr, seed=settings.seed, weights=w
        )
        err_fold = norm_error(cap["d"], y, norm, t, w)
        how = "through the post-MLP norm"
    folded = err_fold < err_plain and math.isfinite(err_fold)
    if not folded:
        LOG.info("linear: layer %d: fold does not beat plain removal on calibration; T = I", p)
        t = torch.eye(y.shape[1])
    figures = {
        "p": p,
        "tokens": int(y.shape[0]),
        "fit": how,
        "token_weight": settings.token_weight,
        "err_plain": err_plain,
        "err_fold": min(err_fold, err_plain) if folded else err_plain,
        "folded": folded,
    }
    return t, figures


@torch.no_grad()
def merge_linear(model, removed: list[int], ctx: MergeContext) -> MergeInfo:
    s = ctx.settings
    if not ctx.batches:
        raise DamocError("the linear merge needs calibration text")
    layers = decoder_layers(model)
    blocks = contiguous_blocks(removed)
    for a, _ in blocks:
        if a > 0:
            mlp_parts(layers[a - 1])
    foldable = [(a, e) for a, e in blocks if a > 0]
    for a, e in blocks:
        if a == 0:
            LOG.info("linear: block [0, %d) has no kept layer before it: plain removal there", e)
    targets = capture_targets(model, ctx.batches, sorted({e for _, e in foldable})) if foldable else {}
    order = foldable if s.fit_on_pruned else list(reversed(foldable))
    originals: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    done: list[int] = []
    records = []
    for a, e in order:
        p = a - 1
        with skipping(model, done if s.fit_on_pruned else []):
            t, fig = _fit_block(model, ctx.batches, p, targets[e], s)
        fig["block"] = [a, e]
        records.append(fig)
        if fig["folded"]:
            down, _ = mlp_parts(layers[p])
            originals[p] = (
                down.weight.detach().clone(),
                None if down.bias is None else down.bias.detach().clone(),
            )
            w, b = fold_into_down(down.weight, down.bias, t.to(down.weight.device))
            down.weight.copy_(w)
            if b is not None:
                down.bias.copy_(b)
        done.extend(range(a, e))
        LOG.info(
            "linear: block [%d, %d) -> layer %d: error %.4g -> %.4g",
            a,
            e,
            p,
            fig["err_plain"],
            fig["err_fold"],
        )
    details: dict = {"blocks": records, "ridge": s.ridge, "fit_on_pruned": s.fit_on_pruned}
    if s.verify and originals:
        with skipping(model, removed):
            loss_fold = calibration_loss(model, ctx.batches)
            _swap(layers, originals)
            loss_plain = calibration_loss(model, ctx.batches)
            if loss_fold < loss_plain:
                _swap(layers, originals)
        kept = loss_fold < loss_plain
        details.update(calib_loss_plain=loss_plain, calib_loss_fold=loss_fold, fold_kept=kept)
        if not kept:
            LOG.warning(
                "linear: the fold's calibration loss %.4f is not below plain removal's %.4f: plain removal kept",
                loss_fold,
                loss_plain,
            )
    return MergeInfo(
        method="linear", targets={r: a - 1 for a, e in foldable for r in range(a, e)}, details=details
    )


def _swap(layers, saved: dict[int, tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """Exchange the current down projections of the layers in ``saved`` with the saved tensors."""
    for p, (w, b) in saved.items():
        down, _ = mlp_parts(layers[p])
        cur_w = down.weight.detach().clone()
        down.weight.copy_(w)
        cur_b = None
        if b is not None:
            cur_b = down.bias.detach().clone()
            down.bias.copy_(b)
        saved[p] = (cur_w, cur_b)
