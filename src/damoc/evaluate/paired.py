"""Paired comparison of two models scored on the same rows, by answer bits per byte.

Bits per byte over a row set is a ratio of sums (total answer bits / total answer bytes), so the
difference between two models is resampled as a whole: each bootstrap draw picks rows with
replacement and recomputes both ratios on the same rows. Rows are the unit of resampling, which is
what a held-out eval of a few dozen rows can and cannot resolve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch


@dataclass
class PairedDifference:
    diff: float  # bpb(a) - bpb(b) on all rows; negative: a is better (lower)
    ci_low: float  # percentile bootstrap interval of the difference
    ci_high: float
    share_a_better: float  # share of bootstrap draws with bpb(a) < bpb(b)
    n_rows: int
    n_boot: int
    level: float

    def to_dict(self) -> dict:
        return asdict(self)


def bits_per_byte(bits: Sequence[float], n_bytes: Sequence[int]) -> float:
    return float(sum(bits)) / max(1, int(sum(n_bytes)))


def paired_bpb_difference(
    bits_a: Sequence[float],
    bits_b: Sequence[float],
    n_bytes: Sequence[int],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """bpb(a) - bpb(b) on the same rows (per-row answer bits of a and b, the rows' answer bytes)."""
    n = len(n_bytes)
    if not (len(bits_a) == len(bits_b) == n) or n == 0:
        raise ValueError(f"need the same non-empty rows for both models, got {len(bits_a)}/{len(bits_b)}/{n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    a = torch.tensor(bits_a, dtype=torch.float64)
    b = torch.tensor(bits_b, dtype=torch.float64)
    w = torch.tensor(n_bytes, dtype=torch.float64)
    diff = float((a.sum() - b.sum()) / w.sum().clamp(min=1))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=g)
    den = w[idx].sum(1).clamp(min=1)
    da, db = a[idx].sum(1) / den, b[idx].sum(1) / den
    d = da - db
    tail = (1.0 - level) / 2
    lo, hi = torch.quantile(d, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return PairedDifference(
        diff=diff,
        ci_low=lo,
        ci_high=hi,
        share_a_better=float((da < db).double().mean()),
        n_rows=n,
        n_boot=n_boot,
        level=level,
    )


__all__ = ["PairedDifference", "bits_per_byte", "paired_bpb_difference"]
