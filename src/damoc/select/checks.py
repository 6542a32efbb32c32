"""Checks on a proxy ranking that need no ground truth.

Compression check: the proxy fine-tune is there to show how each candidate takes to the task; it
starts from a compressed model (layers removed, optionally pruned or quantized). A candidate whose
proxy score ends up *worse than its own uncompressed zero-shot score* was not brought back by the
fine-tune, so its proxy score says more about what the compression did to it than about how it
would fine-tune. Over the selection benchmark's runs, rankings in which some candidate failed this
check found the full fine-tune's winner far less often than rankings in which every candidate passed
(benchmarks/results/selection.md, "The compression check").
"""

from __future__ import annotations


def compression_check(
    proxy: dict[str, float],
    zero_shot: dict[str, float],
    higher_is_better: bool,
    tolerance: float = 0.0,
) -> dict[str, float]:
    """The candidates whose proxy score is worse than their zero-shot score by more than ``tolerance``
    (a fraction of the zero-shot score), each with proxy ÷ zero-shot. Candidates without both scores are
    left out."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    flagged = {}
    for cand, p in proxy.items():
        z = zero_shot.get(cand)
        if z is None or p is None:
            continue
        worse = p < z * (1.0 - tolerance) if higher_is_better else p > z * (1.0 + tolerance)
        if worse:
            flagged[cand] = p / z if z else float("inf")
    return flagged


__all__ = ["compression_check"]
