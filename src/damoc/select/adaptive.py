"""Adaptive proxy budget: the scheduling math (no files, no models, no processes).

Successive halving (Jamieson & Talwalkar 2016, arXiv 1502.07943; Hyperband, Li et al., arXiv 1603.06560)
gives every candidate a small budget, keeps the promising ones and gives them a budget ``growth`` times
larger, round after round. Here the budget is the proxy's size (training rows, epochs, dev rows), and
"promising" is decided the way racing methods do (Maron & Moore 1994, Hoeffding races): a candidate is
dropped only when its paired-bootstrap interval against the round's leader excludes zero, so a candidate
that is merely behind by noise stays in. Optionally ``keep_fraction`` also caps the survivors per round,
as plain successive halving does.

Why not Ray Tune's ``ASHAScheduler`` / ``HyperBandScheduler`` where the Ray backend runs: they cut trials
by the rank of one scalar metric at each rung (ASHA asynchronously, so a decision depends on which trials
reported first), while the rule here needs every candidate's per-row dev scores of the same round to pair
them against the leader; and the same decisions must come out of the local backend, of the Ray backend and
of a resumed run, which replays them from the unit records on disk. So both backends run the rounds'
units and this module decides, the same way for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from damoc.select.config import AdaptiveSettings


@dataclass(frozen=True)
class Resources:
    """The size of one round's proxy."""

    rows: int  # proxy training rows
    epochs: float
    dev_rows: int

    @property
    def train_units(self) -> float:
        """Rows × epochs: what a fine-tune's cost grows with."""
        return self.rows * self.epochs


def schedule(settings: AdaptiveSettings, full: Resources) -> list[Resources]:
    """The rounds' proxy sizes: ``start_* × growth^r``, each capped at the full proxy's, for at most
    ``settings.rounds`` rounds; the last round is always the full proxy (and no round repeats it)."""
    out: list[Resources] = []
    for r in range(settings.rounds):
        scale = settings.growth**r
        res = Resources(
            rows=min(full.rows, math.ceil(settings.start_rows * scale)),
            epochs=min(full.epochs, settings.start_epochs * scale),
            dev_rows=min(full.dev_rows, math.ceil(settings.start_dev_rows * scale)),
        )
        if res == full or r == settings.rounds - 1:
            out.append(full)
            break
        out.append(res)
    return out


def survivors(
    order: list[str], separated: dict[str, bool], keep_fraction: float | None = None
) -> tuple[list[str], list[str]]:
    """(kept, dropped) after a round.

    ``order``: the round's candidates, best score first (the leader first). ``separated[c]``: c's paired
    interval against the leader excludes zero (the leader is clearly better). The leader and every
    candidate not separated from it are kept; with ``keep_fraction``, at most ``ceil(keep_fraction × n)``
    of them (the best scores), as plain successive halving keeps."""
    if not order:
        return [], []
    kept = [order[0]] + [c for c in order[1:] if not separated.get(c, False)]
    if keep_fraction is not None:
        kept = kept[: max(1, math.ceil(keep_fraction * len(order)))]
    return kept, [c for c in order if c not in kept]


def estimate_wall_s(prev: Resources, nxt: Resources, wall_s: float, stage_s: dict[str, float]) -> float:
    """A unit's wall seconds at ``nxt`` from what it took at ``prev``: the fine-tune grows with rows ×
    epochs, dev scoring with the dev rows, and the rest (model load, layer removal) stays."""
    ft = stage_s.get("finetune", 0.0)
    ev = stage_s.get("eval", 0.0)
    fixed = max(0.0, wall_s - ft - ev)
    return (
        fixed + ft * nxt.train_units / max(1e-9, prev.train_units) + ev * nxt.dev_rows / max(1, prev.dev_rows)
    )


def estimate_train_tokens(prev: Resources, nxt: Resources, train_tokens: int) -> float:
    """A unit's fine-tune tokens at ``nxt`` from its count at ``prev`` (they grow with rows × epochs)."""
    return train_tokens * nxt.train_units / max(1e-9, prev.train_units)


def over_budget(spent: float, estimate: float, budget: float | None) -> bool:
    """Whether a round estimated at ``estimate`` would take the spending past ``budget`` (None: no cap)."""
    return budget is not None and spent + estimate > budget


def final_order(rounds: list[list[tuple[str, float | None, str]]], higher_is_better: bool) -> list[str]:
    """The candidates best first: the last round's survivors by score, then the dropped ones, those who
    lasted longer first and by score within a round. ``rounds``: per round, (candidate, score, status)
    with status ``leader``/``kept``/``dropped``/``behind``/``failed``; failed candidates are left out."""

    def by_score(items):
        return sorted(items, key=lambda t: -t[1] if higher_is_better else t[1])

    out: list[str] = []
    last = len(rounds) - 1
    for r in range(last, -1, -1):
        if r == last:
            group = [t for t in rounds[r] if t[2] != "failed" and t[1] is not None]
            # the last round's order is its scores' (a drop there only says the leader separated)
            out += [t[0] for t in by_score(group)]
        else:
            out += [t[0] for t in by_score([t for t in rounds[r] if t[2] == "dropped"])]
    return out


__all__ = [
    "Resources",
    "estimate_train_tokens",
    "estimate_wall_s",
    "final_order",
    "over_budget",
    "schedule",
    "survivors",
]
