"""The Optimal Brain Surgeon sweep shared by SparseGPT and GPTQ (Frantar et al., 2022/2023).

Columns are processed left to right in lazy blocks; each column is replaced by its rounded value
(pruned or quantized), and the error is spread over the columns not yet processed through the
upper Cholesky factor of ``H⁻¹``. The two methods differ only in the rounding rule (:class:`Rounder`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

import torch

from damoc.errors import DamocError
from damoc.threads import torch_threads

LOG = logging.getLogger(__name__)

# The sweep is thousands of small ops per layer: one intra-op thread is faster than several (and ~15x
# faster on a loaded machine, where every op would otherwise wait for a descheduled worker thread).
SWEEP_THREADS = 1


_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("damoc_shared_factors", default=None)


@contextlib.contextmanager
def shared_factors() -> Iterator[None]:
    """Within the block, layers given the very same ``H`` tensor (e.g. q/k/v, which read one input)
    share one factorization instead of computing it once each."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def damped_inverse_cholesky(h: torch.Tensor, damp: float, max_tries: int = 5) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + λI)⁻¹`` with ``λ = damp · mean(diag(H))``.

    Columns whose diagonal is zero (inputs never seen) must be handled by the caller first. When the
    factorization fails, the damping is multiplied by 10, up to ``max_tries`` times. Inside
    :func:`shared_factors`, a repeated call with the same tensor object returns the same factor.
    """
    memo = _SHARED.get()
    if memo is None:
        return _factor(h, damp, max_tries)
    key = (id(h), damp, max_tries)
    hit = memo.get(key)
    if hit is None or hit[0] is not h:
        hit = memo[key] = (h, _factor(h, damp, max_tries))
    return hit[1]


def _factor(h: torch.Tensor, damp: float, max_tries: int) -> torch.Tensor:
    h = h.double()  # the inverse of an ill-conditioned H is fragile in float32
    n = h.shape[0]
    mean_diag = float(torch.diagonal(h).mean())
    lam = damp * (mean_diag if mean_diag > 0 else 1.0)
    eye = torch.eye(n, dtype=h.dtype, device=h.device)
    for attempt in range(max_tries):
        chol, info = torch.linalg.cholesky_ex(h + lam * eye)
        if int(info) == 0:
            hinv = torch.cholesky_inverse(chol)
            up, info2 = torch.linalg.cholesky_ex(hinv, upper=True)
            if int(info2) == 0:
                if attempt:
                    LOG.warning("H was not positive definite: used damping %.3g", lam)
                return up.float()
        lam *= 10.0
    raise DamocError(
        "the calibration Hessian is not positive definite even with strong damping: add calibration text"
    )


def handle_dead_inputs(w: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs that were always zero: set ``H_jj = 1`` and their weights to 0 (they never contribute)."""
    dead = torch.diagonal(h) == 0
    if bool(dead.any()):
        h = h.clone()
        h[dead, dead] = 1.0
        w = w.clone()
        w[:, dead] = 0.0
    return w, h


class Rounder:
    """The per-column rule of an OBS sweep: replace column ``w`` by its pruned/quantized value."""

    def start_block(self, w1: torch.Tensor, hinv1: torch.Tensor, col0: int, w: torch.Tensor) -> None:
        """Called before a block's first column with its current weights ``w1`` and the working ``w``
        (whose columns past the block hold the lazily-updated values)."""

    def round(self, col: int, i: int, w1: torch.Tensor, hinv1: torch.Tensor) -> torch.Tensor:
        """The new value of global column ``col`` (column ``i`` of the block ``w1``)."""
        raise NotImplementedError


def obs_sweep(w: torch.Tensor, hinv: torch.Tensor, rounder: Rounder, block_size: int = 128) -> torch.Tensor:
    """Round every column of ``w`` (float32, (out, in)) in order, compensating with ``hinv`` (upper)."""
    with torch_threads(SWEEP_THREADS):
        return _sweep(w, hinv, rounder, block_size)


def _sweep(w: torch.Tensor, hinv: torch.Tensor, rounder: Rounder, block_size: int) -> torch.Tensor:
    w = w.clone()
    out = torch.zeros_like(w)
    cols = w.shape[1]
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        rounder.start_block(w1, hinv1, i1, w)
        for i in range(i2 - i1):
            col = w1[:, i]
            q = rounder.round(i1 + i, i, w1, hinv1)
            q1[:, i] = q
            err = (col - q) / hinv1[i, i]
            w1[:, i:] -= err.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            err1[:, i] = err
        out[:, i1:i2] = q1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return out
