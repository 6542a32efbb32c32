"""The adaptive proxy's rounds: their data files and units, run through the run's backend.

Round r trains each remaining candidate's proxy on the first ``rows`` of a seeded permutation of the proxy
subset (so each round's rows include the last round's), for ``epochs``, and scores it on the first
``dev_rows`` dev rows; the last round is the run's own proxy unit (``proxy.json``). Each round's unit
writes ``candidates/<slug>/proxy@r<r>.json``. Decisions are replayed from these records, so a killed run
resumes where it stopped and reaches the same decisions, on either backend. The trail is kept in
``adaptive.json`` as the rounds go.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from damoc.evaluate.metrics import get_metric
from damoc.io.files import write_json_atomic, write_jsonl_atomic
from damoc.io.tasks import read_jsonl
from damoc.select import adaptive
from damoc.select.adaptive import Resources
from damoc.select.confidence import answer_bytes, pair_interval
from damoc.select.config import SelectConfig, config_hash
from damoc.select.records import AdaptiveRound, AdaptiveTrail, RoundEntry, UnitRecord
from damoc.select.worker import UnitSpec, read_examples

LOG = logging.getLogger(__name__)

TRAIL_FILE = "adaptive.json"


@dataclass
class AdaptiveResult:
    trail: AdaptiveTrail
    records: dict[tuple[int, str], UnitRecord] = field(default_factory=dict)  # (round, candidate) -> record

    def last_records(self) -> dict[str, tuple[int, UnitRecord]]:
        """Each candidate's latest round and its record."""
        out: dict[str, tuple[int, UnitRecord]] = {}
        for (r, cand), rec in sorted(self.records.items()):
            out[cand] = (r, rec)
        return out


def round_spec(unit: UnitSpec, r: int, res: Resources, full: Resources, files: dict[str, str]) -> UnitSpec:
    """The proxy unit of round ``r`` for ``unit``'s candidate (the unit itself when ``res`` is the full proxy)."""
    if res == full:
        return unit
    ft = unit.finetune.model_copy(update={"epochs": res.epochs}) if unit.finetune else None
    spec = unit.model_copy(
        update={
            "train_path": files["train"],
            "dev_path": files["dev"],
            "finetune": ft,
            "record_path": str(Path(unit.record_path).with_name(f"proxy@r{r}.json")),
        }
    )
    skip = {"record_path", "device", "threads", "spec_hash", "train_path", "dev_path"}
    payload = spec.model_dump(mode="json", exclude=skip, exclude_defaults=True)
    payload["data"] = unit.spec_hash  # the full proxy's settings (its data included)
    payload["round"] = [res.rows, res.epochs, res.dev_rows]
    return spec.model_copy(update={"spec_hash": config_hash(payload)})


def round_files(run: Path, r: int, res: Resources, full: Resources, train: Path, dev: Path, seed: int):
    """Write round ``r``'s training rows (a prefix of a seeded permutation) and dev rows (a prefix)."""
    folder = run / "adaptive" / f"round{r}"
    files = {"train": str(train), "dev": str(dev)}
    if res.rows < full.rows:
        rows = read_jsonl(train)
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        files["train"] = str(write_jsonl_atomic(folder / "train.jsonl", [rows[i] for i in order[: res.rows]]))
    if res.dev_rows < full.dev_rows:
        files["dev"] = str(write_jsonl_atomic(folder / "dev.jsonl", read_jsonl(dev)[: res.dev_rows]))
    return files


def run_adaptive(
    cfg: SelectConfig,
    units: Sequence[UnitSpec],
    run: Path,
    train: Path,
    dev: Path,
    n_train: int,
    run_units: Callable[[list[UnitSpec]], None] | None,
    done: Callable[[UnitSpec], UnitRecord | None],
) -> AdaptiveResult:
    """Run (or replay) the rounds for the proxy ``units`` (one per candidate, in candidate order).

    ``train``/``dev``: the proxy subset and the dev rows of the full proxy (``n_train`` rows). ``run_units``
    runs units and leaves their records; ``done`` returns a unit's record when it has a current one. Without
    ``run_units`` (a run that does not run the proxy now) the rounds are replayed as far as records go."""
    s = cfg.adaptive
    dev_rows = read_examples(dev)
    full = Resources(rows=n_train, epochs=float(cfg.proxy.epochs), dev_rows=len(dev_rows))
    plan = adaptive.schedule(s, full)
    dev_bytes = answer_bytes(dev_rows)
    trail = AdaptiveTrail(
        level=s.level,
        planned=[(p.rows, p.epochs, p.dev_rows) for p in plan],
        budget_s=s.budget_s,
        max_train_tokens=s.max_train_tokens,
    )
    result = AdaptiveResult(trail)
    by_cand = {u.candidate: u for u in units}
    alive = [u.candidate for u in units]
    prev: Resources | None = None
    for r, res in enumerate(plan):
        if prev is not None and _over_budget(cfg, result, prev, res, alive):
            trail.stop, trail.note = "budget", _budget_note(cfg, r)
            break
        files = round_files(run, r, res, full, train, dev, cfg.seed)
        specs = [round_spec(by_cand[c], r, res, full, files) for c in alive]
        missing = [sp for sp in specs if done(sp) is None]
        if missing:
            if run_units is None:
                trail.stop, trail.note = "incomplete", f"round {r} has not run"
                break
            LOG.info(
                "adaptive round %d: %d candidates on %d rows × %g epochs, %d dev rows",
                r,
                len(specs),
                res.rows,
                res.epochs,
                res.dev_rows,
            )
            run_units(missing)
        recs = {sp.candidate: done(sp) for sp in specs}
        entry_round = _decide(cfg, r, res, specs, recs, dev_bytes, run, last=r == len(plan) - 1)
        for sp in specs:
            if recs[sp.candidate] is not None:
                result.records[(r, sp.candidate)] = recs[sp.candidate]  # type: ignore[assignment]
        trail.rounds.append(entry_round)
        alive = [e.candidate for e in entry_round.entries if e.status in ("leader", "kept")]
        prev = res
        _order(trail, cfg)
        write_json_atomic(run / TRAIL_FILE, trail.model_dump(mode="json"))
        if not alive:
            trail.stop, trail.note = "all_failed", f"every candidate failed in round {r}"
            break
        if len(alive) == 1 and len(specs) > 1:
            trail.stop = "separated"
            trail.note = f"{alive[0]} separated from every other candidate in round {r}"
            break
        if len(alive) == 1:
            trail.stop, trail.note = "separated", f"{alive[0]} is the only candidate left after round {r}"
            break
    else:
        trail.stop = "last_round"
        trail.note = f"the last round (the full proxy) ran without separating {', '.join(alive)}"
    _order(trail, cfg)
    write_json_atomic(run / TRAIL_FILE, trail.model_dump(mode="json"))
    return result


def _decide(cfg, r: int, res: Resources, specs, recs, dev_bytes, run: Path, last: bool) -> AdaptiveRound:
    """Round ``r``'s entries: the leader, and each other candidate kept or dropped by its interval (in the
    ``last`` planned round: kept or "behind")."""
    hib = get_metric(cfg.eval.metric).higher_is_better
    ok = {
        c: rec for c, rec in recs.items() if rec is not None and rec.status == "ok" and rec.score is not None
    }
    order = sorted(ok, key=lambda c: -ok[c].score if hib else ok[c].score)  # type: ignore[operator]
    entries: dict[str, RoundEntry] = {}
    separated: dict[str, bool] = {}
    for c in order:
        rec = ok[c]
        e = RoundEntry(
            candidate=c,
            status="kept",
            score=rec.score,
            wall_s=rec.wall_s,
            stage_s=rec.stage_s,
            train_tokens=rec.train_tokens,
            record=_relative(next(sp.record_path for sp in specs if sp.candidate == c), run),
        )
        if c != order[0]:
            pi = pair_interval(
                "proxy", [ok[order[0]]], [rec], dev_bytes, cfg.confidence, cfg.adaptive.level, r
            )
            if pi is not None:
                e.gap, e.ci_low, e.ci_high, e.p_behind = pi.gap, pi.ci_low, pi.ci_high, pi.p_order
                separated[c] = pi.separated
        entries[c] = e
    kept, dropped = adaptive.survivors(order, separated, cfg.adaptive.keep_fraction)
    for c in kept:
        entries[c].status = "kept"
    if order:
        entries[order[0]].status = "leader"
    for c in dropped:
        entries[c].status = "behind" if last else "dropped"
    failed = [
        RoundEntry(
            candidate=sp.candidate,
            status="failed",
            wall_s=recs[sp.candidate].wall_s if recs[sp.candidate] else 0.0,
            record=_relative(sp.record_path, run),
            error=(recs[sp.candidate].error if recs[sp.candidate] else "no record") or "failed",
        )
        for sp in specs
        if sp.candidate not in ok
    ]
    return AdaptiveRound(
        round=r,
        rows=res.rows,
        epochs=res.epochs,
        dev_rows=res.dev_rows,
        entries=[entries[c] for c in order] + failed,
    )


def _over_budget(cfg: SelectConfig, result: AdaptiveResult, prev: Resources, nxt: Resources, alive) -> bool:
    s = cfg.adaptive
    if s.budget_s is None and s.max_train_tokens is None:
        return False
    last = {c: rec for (r, c), rec in result.records.items() if r == len(result.trail.rounds) - 1}
    recs = [last[c] for c in alive if c in last]
    wall = sum(adaptive.estimate_wall_s(prev, nxt, x.wall_s, x.stage_s) for x in recs)
    tokens = sum(adaptive.estimate_train_tokens(prev, nxt, x.train_tokens) for x in recs)
    t = result.trail
    return adaptive.over_budget(t.wall_s, wall, s.budget_s) or adaptive.over_budget(
        t.train_tokens, tokens, s.max_train_tokens
    )


def _budget_note(cfg: SelectConfig, r: int) -> str:
    s = cfg.adaptive
    caps = [
        f"{s.budget_s:g} unit-seconds" if s.budget_s else "",
        f"{s.max_train_tokens} fine-tune tokens" if s.max_train_tokens else "",
    ]
    return f"round {r} would pass the budget ({' / '.join(c for c in caps if c)})"


def _order(trail: AdaptiveTrail, cfg: SelectConfig) -> None:
    hib = get_metric(cfg.eval.metric).higher_is_better
    trail.ranking = adaptive.final_order(
        [[(e.candidate, e.score, e.status) for e in rnd.entries] for rnd in trail.rounds], hib
    )


def _relative(path: str, run: Path) -> str:
    try:
        return str(Path(path).relative_to(run))
    except ValueError:
        return path


__all__ = ["TRAIL_FILE", "AdaptiveResult", "run_adaptive"]
