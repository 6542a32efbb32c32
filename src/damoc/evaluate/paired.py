"""Paired bootstrap of the difference between two models scored on the same dev rows (and seeds).

One function serves every metric:

- a **plain mean** of per-row values (label accuracy, exact match, token F1, ROUGE-L): ``weights=None``;
- a **ratio of sums** (answer bits per byte: per-row answer bits over per-row answer bytes):
  ``weights`` holds the per-row denominators, and a score is ``sum(values) / sum(weights)``.

Each bootstrap draw picks rows with replacement and recomputes both models' scores on the *same*
rows, so what the two models share (hard rows, easy rows) cancels out of the difference: rows are
the unit of resampling, which is what a held-out eval of a few dozen rows can and cannot resolve.

When several proxy seeds were run (``a_values`` of shape ``(seeds, rows)``; seed ``s`` of ``a`` is paired
with seed ``s`` of ``b``, since a seed fixes the proxy's rows and data order for every candidate), a draw
also picks seeds with replacement, and a model's score is its mean over the drawn seeds (the ratio of
sums pooled over them). The interval then covers both sources of noise: which dev rows were scored and
which proxy run was drawn.

Besides the percentile interval, the result carries the spread the difference would have with the rows
alone resampled and with the seeds alone resampled, from which :func:`rows_to_separate` and
:func:`seeds_to_separate` project how many dev rows or seeds would likely separate a pair the interval
cannot: a normal approximation in which the observed difference stays and each variance part shrinks as
one over the count it comes from (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13
for the percentile interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import torch


@dataclass
class PairedDifference:
    """score(a) - score(b) on the same rows (and seeds), with its paired bootstrap interval.

    ``share_a_better`` / ``share_b_better``: shares of the draws in which a (b) is strictly better, in
    the metric's direction; the rest of the draws tie (common with accuracy on few rows).
    """

    diff: float  # score(a) - score(b) on all rows (and seeds)
    ci_low: float  # percentile bootstrap interval of the difference
    ci_high: float
    share_a_better: float  # share of bootstrap draws in which a is strictly better
    n_rows: int
    n_boot: int
    level: float
    share_b_better: float = 0.0
    n_seeds: int = 1
    higher_is_better: bool = False
    score_a: float = 0.0
    score_b: float = 0.0
    sd_rows: float = 0.0  # bootstrap sd of the difference with only the rows resampled (seeds kept)
    sd_seeds: float = 0.0  # bootstrap sd with only the seeds resampled (rows kept); 0 with one seed

    @property
    def separated(self) -> bool:
        """The interval excludes zero: the data tell the two models apart at this level."""
        return self.ci_low > 0.0 or self.ci_high < 0.0

    @property
    def a_ahead(self) -> bool:
        """a's score is better than b's on all rows (a tie counts as a ahead: input order kept)."""
        return self.diff >= 0 if self.higher_is_better else self.diff <= 0

    @property
    def p_order(self) -> float:
        """Bootstrap probability that the observed order (a ahead, or b ahead) holds; ties count half."""
        tied = max(0.0, 1.0 - self.share_a_better - self.share_b_better)
        return (self.share_a_better if self.a_ahead else self.share_b_better) + 0.5 * tied

    def to_dict(self) -> dict:
        return asdict(self)


def bits_per_byte(bits: Sequence[float], n_bytes: Sequence[int]) -> float:
    return float(sum(bits)) / max(1, int(sum(n_bytes)))


def _as_matrix(values, name: str) -> torch.Tensor:
    """``values`` as a (seeds, rows) float64 matrix (one seed when given as a flat list of rows)."""
    t = torch.as_tensor(values, dtype=torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"{name} must be a list of per-row values, or one such list per seed")
    return t


def paired_difference(
    a_values,
    b_values,
    weights: Sequence[float] | None = None,
    *,
    higher_is_better: bool,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Paired bootstrap of score(a) - score(b) over dev rows (and proxy seeds).

    Args:
        a_values, b_values: per-row values of the two models on the same dev rows, in the same order: a
            list of floats, or one such list per proxy seed (seeds in the same order for both models).
            For a plain-mean metric these are the per-row scores (0/1 for accuracy, F1, ROUGE-L); for
            a ratio-of-sums metric they are the per-row numerators (answer bits for bits per byte).
        weights: ``None`` for a plain mean; else the per-row denominators (answer bytes), the same for
            every seed and both models. A score is then ``sum(values) / sum(weights)``.
        higher_is_better: the metric's direction (it decides which draws count as "a better").
        n_boot: bootstrap draws. level: coverage of the percentile interval, in (0, 1).
        seed: the resampling's random seed (same inputs and seed, same result).

    Returns:
        a :class:`PairedDifference`: the difference on all rows, its percentile interval, the shares of
        draws in which each model is better, and the spreads used by :func:`rows_to_separate`.

    Example (bits per byte, lower is better; a is better on every row)::

        d = paired_difference([3.0, 9.0], [4.0, 12.0], weights=[4, 10], higher_is_better=False)
        d.diff, d.separated   # (-4/14, True)
    """
    a = _as_matrix(a_values, "a_values")
    b = _as_matrix(b_values, "b_values")
    n_seeds, n = a.shape
    if b.shape != a.shape or n == 0 or (weights is not None and len(weights) != n):
        w_len = "-" if weights is None else len(weights)
        raise ValueError(
            f"need the same non-empty rows for both models, got {tuple(a.shape)}/{tuple(b.shape)}/{w_len}"
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    w = (
        torch.ones(n, dtype=torch.float64)
        if weights is None
        else torch.as_tensor(list(weights), dtype=torch.float64)
    )
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=g)  # rows of each draw
    den = w[idx].sum(1).clamp(min=1e-12 if weights is None else 1)  # (draws,)
    # per seed, per draw: the summed values of the drawn rows
    sa, sb = a[:, idx].sum(2), b[:, idx].sum(2)  # (seeds, draws)
    if n_seeds > 1:
        sidx = torch.randint(0, n_seeds, (n_boot, n_seeds), generator=g)  # seeds of each draw
        pick = lambda s: s.gather(0, sidx.T).mean(0)  # noqa: E731 - the drawn seeds' mean
        da, db = pick(sa) / den, pick(sb) / den
    else:
        da, db = sa[0] / den, sb[0] / den
    d = da - db
    total_w = float(w.sum().clamp(min=1e-12 if weights is None else 1))
    score_a = float(a.sum(1).mean()) / total_w
    score_b = float(b.sum(1).mean()) / total_w
    tail = (1.0 - level) / 2
    lo, hi = torch.quantile(d, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    a_better = (da > db) if higher_is_better else (da < db)
    b_better = (db > da) if higher_is_better else (db < da)
    rows_only = (sa.mean(0) - sb.mean(0)) / den  # every seed kept, rows resampled
    sd_seeds = 0.0
    if n_seeds > 1:  # every row kept, seeds resampled
        per_seed = (a.sum(1) - b.sum(1)) / total_w  # (seeds,)
        sd_seeds = float(per_seed[sidx].mean(1).std()) if n_boot > 1 else 0.0
    return PairedDifference(
        diff=score_a - score_b,
        ci_low=lo,
        ci_high=hi,
        share_a_better=float(a_better.double().mean()),
        share_b_better=float(b_better.double().mean()),
        n_rows=n,
        n_boot=n_boot,
        level=level,
        n_seeds=n_seeds,
        higher_is_better=higher_is_better,
        score_a=score_a,
        score_b=score_b,
        sd_rows=float(rows_only.std()) if n_boot > 1 else 0.0,
        sd_seeds=sd_seeds,
    )


def paired_bpb_difference(
    bits_a: Sequence[float],
    bits_b: Sequence[float],
    n_bytes: Sequence[int],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """bpb(a) - bpb(b) on the same rows (per-row answer bits of a and b, the rows' answer bytes)."""
    if not (len(bits_a) == len(bits_b) == len(n_bytes)) or len(n_bytes) == 0:
        raise ValueError(
            f"need the same non-empty rows for both models, got {len(bits_a)}/{len(bits_b)}/{len(n_bytes)}"
        )
    return paired_difference(
        bits_a, bits_b, n_bytes, higher_is_better=False, n_boot=n_boot, level=level, seed=seed
    )


def _negligible(sd: float, d: PairedDifference) -> bool:
    """A spread at the level of floating-point noise (identical seeds give 1e-17, not 0)."""
    return sd <= 1e-12 * max(1.0, abs(d.score_a), abs(d.score_b))


def _target_var(d: PairedDifference) -> float:
    """The variance at which a normal interval at ``d.level`` around ``d.diff`` just excludes zero."""
    z = NormalDist().inv_cdf(0.5 + d.level / 2)
    return (d.diff / z) ** 2


def rows_to_separate(d: PairedDifference) -> int | None:
    """Dev rows (in all, with the same seeds) that would likely separate the pair, or None.

    None: already separated, no difference seen (``diff`` 0), or the seed noise alone is too large for
    more rows to help. Projection: the row part of the variance shrinks as 1 / rows."""
    if d.separated or d.diff == 0 or _negligible(d.sd_rows, d):
        return None
    room = _target_var(d) - d.sd_seeds**2
    if room <= 0:
        return None
    return max(d.n_rows + 1, math.ceil(d.n_rows * d.sd_rows**2 / room))


def seeds_to_separate(d: PairedDifference) -> int | None:
    """Proxy seeds (in all, on the same dev rows) that would likely separate the pair, or None.

    Needs at least two seeds (else their spread is unknown); None also when separated already, when no
    difference is seen, or when the row noise alone is too large for more seeds to help."""
    if d.separated or d.diff == 0 or d.n_seeds < 2 or _negligible(d.sd_seeds, d):
        return None
    room = _target_var(d) - d.sd_rows**2
    if room <= 0:
        return None
    return max(d.n_seeds + 1, math.ceil(d.n_seeds * d.sd_seeds**2 / room))


__all__ = [
    "PairedDifference",
    "bits_per_byte",
    "paired_bpb_difference",
    "paired_difference",
    "rows_to_separate",
    "seeds_to_separate",
]
