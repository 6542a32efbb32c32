"""Where a selection run's cost ratio goes with the size of the training data, from its measured parts.

``damoc select`` records each unit's wall time per stage; its ``Cost`` splits each sweep into the parts
that grow with the training rows (the full fine-tunes; the data stages and the proxy fine-tunes, whose
subset is a fraction of the rows) and the parts that do not (model load, layer removal on a fixed
number of calibration rows, dev scoring of a fixed dev split). With ``scale`` = n / N for a run of N
training rows:

    full sweep(n)  = full wall  + full fine-tunes * (scale - 1)
    proxy sweep(n) = proxy wall + (data stages + proxy fine-tunes) * (scale - 1)

At ``scale`` 1 this gives back the measured ratio; as n grows it tends to
full fine-tunes ÷ (data stages + proxy fine-tunes). It is arithmetic on measured components, not a
measurement at the larger size: time per training row is taken as constant. With a fixed-row budget
(``data.budget`` >= 1) the proxy's data stages and fine-tunes do not grow; only the filter does, since it
passes over every training row, so the ratio has no limit short of full fine-tunes ÷ filter. The functions here read a
run's ``leaderboard.json`` (or any mapping with its ``records`` and ``data``); docs/selection.md
explains the projection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from damoc.select.records import Cost, DataRecord, UnitRecord
from damoc.select.report import best_full, compute_cost


def cost_of(summary: Mapping[str, Any]) -> Cost:
    """The :class:`Cost` of a run from its ``leaderboard.json`` (its ``records`` and ``data``)."""
    records = [UnitRecord.model_validate(r) for r in summary["records"]]
    hib = next((r.higher_is_better for r in records), False)
    cost = compute_cost(best_full(records, hib), DataRecord.model_validate(summary["data"]))
    if cost is None or cost.growing_wall_s is None:
        raise ValueError("the summary has no full and proxy records with stage times")
    return cost


def projected_ratio(summary: Mapping[str, Any], rows: float, fixed_budget: bool | None = None) -> float:
    """Full sweep ÷ proxy sweep (wall) at ``rows`` training rows; ``fixed_budget`` projects the run as if
    its proxy subset were a fixed number of rows (True) or a fraction of them (False) whatever its budget
    said (at the measured size the two are the same run)."""
    cost = cost_of(summary)
    if fixed_budget is not None:
        cost = cost.model_copy(update={"fixed_budget": fixed_budget})
    return cost.projected_wall_ratio(rows / summary["data"]["n_train"])


def limit_ratio(summary: Mapping[str, Any]) -> float:
    """The ratio's limit as the training data grows (the fixed parts vanish)."""
    return cost_of(summary).wall_ratio_limit


def rows_for(summary: Mapping[str, Any], target: float) -> float | None:
    """The fewest training rows at which the projected ratio reaches ``target`` (None: never)."""
    return _rows_for(cost_of(summary), summary["data"]["n_train"], target)


def _rows_for(cost: Cost, n_train: int, target: float) -> float | None:
    grow_full, grow_proxy = cost.growing_wall_s
    # full_wall + grow_full * (s - 1) >= target * (proxy_wall + grow_proxy * (s - 1)), solved for s >= 0
    fixed_full = cost.full_wall_s - grow_full
    fixed_proxy = cost.proxy_wall_s - grow_proxy
    need = target * fixed_proxy - fixed_full
    if need <= 0:
        return 0.0
    slope = grow_full - target * grow_proxy
    if slope <= 0:
        return None
    return n_train * need / slope


def _limit(x: float) -> str:
    return "unbounded" if math.isinf(x) else f"{x:.1f}x"


def projection_markdown(
    runs: list[tuple[str, str, Mapping[str, Any]]], sizes: list[int], target: float = 20.0
) -> str:
    """A table of (domain, proxy setting, summary) runs: measured ratio, projected ratios at ``sizes`` rows,
    the limit, and the training rows needed for ``target``."""
    head = "| domain | proxy | measured (rows) | " + "".join(f"{n:,} rows | " for n in sizes)
    head += f"limit | rows for {target:g}x |"
    out = [head, "|---" * (5 + len(sizes)) + "|"]
    for name, label, s in runs:
        cost = cost_of(s)
        n = s["data"]["n_train"]
        need = _rows_for(cost, n, target)
        cells = "".join(f"{cost.projected_wall_ratio(k / n):.1f}x | " for k in sizes)
        out.append(
            f"| {name} | {label} | {cost.wall_ratio:.1f}x ({n}) | {cells}"
            f"{_limit(cost.wall_ratio_limit)} | {'never' if need is None else f'{need:,.0f}'} |"
        )
    return "\n".join(out)
