"""Where the selection cost ratio goes with the size of the training data: a cost model fitted to one run.

A run's records split each sweep's wall time into parts that grow with the training rows and parts that
do not. With N the training rows of the run and ``scale`` = n / N for another size n:

    full sweep(n)  = sum over the chosen full fine-tunes of  (wall - finetune) + finetune * scale
    proxy sweep(n) = data stages * scale
                     + sum over the proxies of (wall - finetune) + finetune * scale

The data stages (filter, token compression) see the proxy's share of the rows (``data.budget`` as a
fraction), the proxy fine-tune the same share, the full fine-tune all of them; model load, layer removal
(calibrated on a fixed number of rows) and dev scoring (a fixed dev split) do not grow. At ``scale`` 1
the model gives back the measured ratio exactly; as n grows the ratio tends to

    sum of full fine-tunes / (data stages + sum of proxy fine-tunes)

This is arithmetic on measured components, not a measurement at the larger size: the fine-tune time per
row is taken as constant (warm-up and optimizer set-up are counted as if they grew with the rows, which
slightly flatters neither side), and a fixed-row budget (``data.budget`` >= 1) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SweepParts:
    """One sweep's wall seconds: the part that grows with the training rows and the part that does not."""

    growing: float
    fixed: float

    def at(self, scale: float) -> float:
        return self.fixed + self.growing * scale


def _chosen_full(records: list[dict]) -> list[dict]:
    """Each candidate's best full fine-tune record (the one the ground truth keeps: ``report.best_full``)."""
    from damoc.select.records import UnitRecord
    from damoc.select.report import best_full

    full = [r for r in records if r["method"] == "full" and r["status"] == "ok"]
    if not full:
        return []
    units = [UnitRecord.model_validate(r) for r in full]
    chosen = {id(u) for u in best_full(units, full[0]["higher_is_better"])}
    return [r for r, u in zip(full, units, strict=True) if id(u) in chosen]


def _units(records: list[dict]) -> SweepParts:
    growing = sum(r["stage_s"].get("finetune", 0.0) for r in records)
    total = sum(r["wall_s"] for r in records)
    return SweepParts(growing=growing, fixed=total - growing)


def sweep_parts(summary: dict) -> tuple[SweepParts, SweepParts]:
    """(full sweep, proxy sweep) parts of a benchmark summary (``benchmarks/records/selection/<domain>.json``)."""
    recs = summary["records"]
    full = _units(_chosen_full(recs))
    proxy = _units([r for r in recs if r["method"] == "proxy" and r["status"] == "ok"])
    data = sum(summary["data"].get("stage_s", {}).values())
    return full, SweepParts(growing=proxy.growing + data, fixed=proxy.fixed)


def projected_ratio(summary: dict, rows: float) -> float:
    """Full sweep ÷ proxy sweep (wall) at ``rows`` training rows, from the run's measured parts."""
    full, proxy = sweep_parts(summary)
    scale = rows / summary["data"]["n_train"]
    return full.at(scale) / proxy.at(scale)


def limit_ratio(summary: dict) -> float:
    """The ratio's limit as the training data grows (fixed parts vanish)."""
    full, proxy = sweep_parts(summary)
    return full.growing / proxy.growing


def rows_for(summary: dict, target: float) -> float | None:
    """The fewest training rows at which the projected ratio reaches ``target`` (None: never)."""
    full, proxy = sweep_parts(summary)
    # full.fixed + full.growing s >= target (proxy.fixed + proxy.growing s)
    slope = full.growing - target * proxy.growing
    need = target * proxy.fixed - full.fixed
    if need <= 0:
        return 0.0
    if slope <= 0:
        return None
    return summary["data"]["n_train"] * need / slope


def projection_markdown(runs: list[tuple[str, str, dict]], sizes: list[int], target: float = 20.0) -> str:
    """A table of (domain, proxy setting, summary) runs: measured ratio, projected ratios at ``sizes`` rows,
    the limit, and the training rows needed for ``target``."""
    head = "| domain | proxy | measured (rows) | " + "".join(f"{n:,} rows | " for n in sizes)
    head += f"limit | rows for {target:g}x |"
    out = [head, "|---" * (5 + len(sizes)) + "|"]
    for name, label, s in runs:
        n = s["data"]["n_train"]
        need = rows_for(s, target)
        cells = "".join(f"{projected_ratio(s, k):.1f}x | " for k in sizes)
        out.append(
            f"| {name} | {label} | {projected_ratio(s, n):.1f}x ({n}) | {cells}"
            f"{limit_ratio(s):.1f}x | {'never' if need is None else f'{need:,.0f}'} |"
        )
    return "\n".join(out)
