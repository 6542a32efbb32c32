"""How many dev rows does a proxy need? Its ranking on random subsets of the dev rows it was scored on.

A likelihood proxy's score is answer bits summed over the dev rows ÷ answer bytes summed over them
(``answer_bpb``, docs/metrics.md), so the score of any subset of rows is exact from the per-row
figures a unit record keeps (``per_example``), not an average of averages. :func:`agreement` draws
``k``-row subsets at random and counts how often the proxy's top-1 and its whole order stay the truth's.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from damoc.evaluate.paired import bits_per_byte


def order(scores: Mapping[str, float]) -> tuple[str, ...]:
    """Candidates best first by bits per byte (lower is better), ties by name."""
    return tuple(sorted(scores, key=lambda c: (scores[c], c)))


def subset_score(per: Sequence[float], nbytes: Sequence[int], idx: Iterable[int]) -> float:
    """Bits/byte of the rows ``idx``: their answer bits summed over their answer bytes summed."""
    rows = list(idx)
    return bits_per_byte([per[i] * nbytes[i] for i in rows], [nbytes[i] for i in rows])


def agreement(run: Mapping[str, Any], k: int, draws: int, seed: int = 0) -> tuple[float, float]:
    """Share of ``draws`` random k-row dev subsets on which the proxy's top-1 / whole order is the truth's.

    ``run`` holds ``bytes`` (answer bytes per dev row), ``truth`` (candidate -> true score) and ``proxy``
    (candidate -> per-row bits per byte)."""
    rng = random.Random(seed)
    truth = order(run["truth"])
    n = len(run["bytes"])
    top = full = 0
    for _ in range(draws if k < n else 1):
        idx = rng.sample(range(n), k) if k < n else list(range(n))
        got = order({c: subset_score(per, run["bytes"], idx) for c, per in run["proxy"].items()})
        top += got[0] == truth[0]
        full += got == truth
    total = draws if k < n else 1
    return top / total, full / total
