"""The leaderboard from a run's records: ranks, intervals, ranking agreement, cost (no rendering here)."""

from __future__ import annotations

import math
from pathlib import Path

from damoc.evaluate.metrics import get_metric
from damoc.select.adaptive_run import AdaptiveResult
from damoc.select.checks import compression_check
from damoc.select.confidence import adjacent_pairs, answer_bytes, pair_interval
from damoc.select.config import SelectConfig
from damoc.select.ranking import agreement
from damoc.select.records import (
    METHODS,
    Agreement,
    BoardSettings,
    Cost,
    DataRecord,
    Leaderboard,
    PairInterval,
    Row,
    UnitRecord,
)
from damoc.select.worker import read_examples

BASELINES = ("zero_shot", "few_shot")


def _scores(records: list[UnitRecord], method: str) -> dict[str, float]:
    return {
        r.candidate: float(r.score)
        for r in records
        if r.method == method and r.status == "ok" and r.score is not None and math.isfinite(r.score)
    }


def best_full(records: list[UnitRecord], higher_is_better: bool) -> list[UnitRecord]:
    """The records with, per candidate, only its best successful full fine-tune (over an lr grid).

    Failed full fine-tunes of a candidate are kept only when none of its rates succeeded."""
    best: dict[str, UnitRecord] = {}
    failed: dict[str, UnitRecord] = {}
    for r in records:
        if r.method != "full":
            continue
        if r.status != "ok" or r.score is None or not math.isfinite(r.score):
            failed.setdefault(r.candidate, r)
            continue
        cur = best.get(r.candidate)
        better = cur is None or (r.score > cur.score if higher_is_better else r.score < cur.score)  # type: ignore[operator]
        if better:
            best[r.candidate] = r
    chosen = [r for r in records if r.method != "full"]
    chosen += [
        best.get(c) or failed[c] for c in dict.fromkeys(r.candidate for r in records if r.method == "full")
    ]
    return chosen


def compute_cost(records: list[UnitRecord], data: DataRecord) -> Cost | None:
    """Full sweep ÷ proxy sweep; the proxy sweep includes the shared data stages."""
    full = [r for r in records if r.method == "full" and r.status == "ok"]
    proxy = [r for r in records if r.method == "proxy" and r.status == "ok"]
    if not full or not proxy:
        return None
    return Cost(
        full_wall_s=sum(r.wall_s for r in full),
        proxy_wall_s=data.wall_s + sum(r.wall_s for r in proxy),
        full_tokens=sum(r.tokens for r in full),
        proxy_tokens=data.prep_tokens + sum(r.tokens for r in proxy),
        full_train_wall_s=sum(r.stage_s.get("finetune", 0.0) for r in full),
        proxy_train_wall_s=data.wall_s
        + sum(sum(r.stage_s.get(k, 0.0) for k in ("finetune", "prune", "calibrated")) for r in proxy),
        full_train_tokens=sum(r.train_tokens for r in full),
        proxy_train_tokens=data.prep_tokens + sum(r.train_tokens + r.prep_tokens for r in proxy),
        full_cpu_s=sum(r.cpu_s for r in full) if all(r.cpu_s for r in full) else None,
        proxy_cpu_s=data.cpu_s + sum(r.cpu_s for r in proxy) if all(r.cpu_s for r in proxy) else None,
        full_stage_s=stage_totals(full),
        proxy_stage_s={"data stages": data.wall_s, **stage_totals(proxy)},
        fixed_budget=data.budget is not None and data.budget >= 1,
        filter_wall_s=data.stage_s.get("filter", 0.0),
        full_peak_rss_mb=_largest(r.peak_rss_mb for r in full),
        proxy_peak_rss_mb=_largest(r.peak_rss_mb for r in proxy),
        full_peak_gpu_mb=_largest(r.peak_gpu_mb for r in full),
        proxy_peak_gpu_mb=_largest(r.peak_gpu_mb for r in proxy),
    )


def _largest(values) -> float | None:
    """The largest value, or None when any is missing (a peak over part of a sweep is not its peak)."""
    values = list(values)
    return max(values) if values and all(v is not None for v in values) else None


def stage_totals(records: list[UnitRecord]) -> dict[str, float]:
    """Wall seconds per stage summed over ``records``; what no stage covers (start-up, saving), when it
    reaches 0.05 s, is "other"."""
    out: dict[str, float] = {}
    for r in records:
        for k, v in r.stage_s.items():
            out[k] = out.get(k, 0.0) + v
    other = sum(r.wall_s for r in records) - sum(out.values())
    if other >= 0.05:
        out["other"] = other
    return out


def build_leaderboard(
    cfg: SelectConfig,
    data: DataRecord,
    records: list[UnitRecord],
    run: Path,
    rounds: AdaptiveResult | None = None,
) -> Leaderboard:
    """The typed leaderboard of a run: ``records`` are its units' records (every rate of a ground-truth
    grid; without the proxy's when ``rounds``, the adaptive proxy's rounds, are given)."""
    metric = get_metric(cfg.eval.metric)
    hib = metric.higher_is_better
    round_records = list(rounds.records.values()) if rounds else []
    all_records, records = [*records, *round_records], best_full([*records, *round_records], hib)
    last = rounds.last_records() if rounds else {}
    if rounds:
        proxy = {c: float(rec.score) for c, (_r, rec) in last.items() if c in rounds.trail.ranking}  # type: ignore[arg-type]
        order = list(rounds.trail.ranking)
    else:
        proxy = _scores(records, "proxy")
        order = sorted(proxy, key=lambda c: metric.sort_key(proxy[c]))
    rows = []
    for cand in cfg.candidates:
        mine = {r.method: r for r in records if r.candidate == cand}
        if cand in last:
            mine["proxy"] = last[cand][1]
        p = mine.get("proxy")
        mine_rounds = [rec for (_r, c), rec in sorted(rounds.records.items()) if c == cand] if rounds else []
        rows.append(
            Row(
                rank=order.index(cand) + 1 if cand in order else None,
                candidate=cand,
                slug=next(iter(mine.values())).slug if mine else "",
                scores={m: mine[m].score if mine[m].status == "ok" else None for m in METHODS if m in mine},
                errors={m: mine[m].error or "" for m in METHODS if m in mine and mine[m].status != "ok"},
                proxy_wall_s=sum(r.wall_s for r in mine_rounds) if mine_rounds else (p.wall_s if p else None),
                proxy_tokens=sum(r.tokens for r in mine_rounds) if mine_rounds else (p.tokens if p else None),
                layers_removed=p.layers_removed if p else [],
                n_params=p.n_params if p else None,
                round=last[cand][0] if cand in last else None,
                dropped=bool(rounds) and _dropped(rounds, cand),
            )
        )
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0))
    true = _scores(records, "full")
    agreements: list[Agreement] = []
    if true:
        for method in ("proxy", *BASELINES):
            pred = _scores(records, method)
            if method == "proxy" and rounds:  # scores of different rounds do not compare: rank by position
                pred = {c: float(i) if not hib else -float(i) for i, c in enumerate(order)}
            if pred:
                agreements.append(agreement(method, pred, true, hib))  # type: ignore[arg-type]
    settings = BoardSettings(
        train_rows=data.n_train,
        dev_rows=data.n_dev,
        proxy_rows=data.n_proxy_train,
        filter=cfg.data.filter,
        budget=cfg.data.budget,
        compress_rate=cfg.data.compress_rate,
        rewrite=cfg.data.rewrite,
        layer_fraction=cfg.model.layer_fraction,
        merge=cfg.model.merge,
        calibrated=cfg.model.calibrated,
        proxy_finetune=cfg.proxy,
        eval=cfg.eval,
        validate=cfg.validate_.enabled,
        full_finetune=cfg.validate_.finetune if cfg.validate_.enabled else None,
        truth_lr_grid=cfg.validate_.lr_grid if cfg.validate_.enabled else None,
        truth_eval_precision=cfg.validate_.eval_precision if cfg.validate_.enabled else None,
        truth_lr={r.candidate: r.lr for r in records if r.method == "full" and r.status == "ok"},
        backend=cfg.run.backend,
        confidence=cfg.confidence,
        adaptive=cfg.adaptive if rounds else None,
    )
    return Leaderboard(
        task=data.task,
        metric=metric.name,
        higher_is_better=hib,
        candidates=list(cfg.candidates),
        rows=rows,
        data=data,
        records=all_records,
        agreement=agreements,
        cost=compute_cost(records, data),
        compression_check={}
        if cfg.compression_check is None
        else compression_check(
            {c: v for c, v in proxy.items() if c not in last or last[c][1].n_dev == data.n_dev},
            _scores(records, "zero_shot"),
            hib,
            cfg.compression_check,
        ),
        settings=settings,
        pairs=leaderboard_pairs(cfg, records, run, order, rounds),
        versus_pick=versus_pick(cfg, records, run, order[0] if order else None, rounds),
        adaptive=rounds.trail if rounds else None,
        run_dir=str(run),
    )


def _dropped(rounds: AdaptiveResult, cand: str) -> bool:
    return any(e.candidate == cand and e.status == "dropped" for r in rounds.trail.rounds for e in r.entries)


def _dev_bytes(run: Path) -> list[int] | None:
    """The run's dev rows' answer bytes (None when the run directory has no dev split)."""
    path = run / "data" / "dev.jsonl"
    return answer_bytes(read_examples(path)) if path.is_file() else None


def leaderboard_pairs(
    cfg: SelectConfig,
    records: list[UnitRecord],
    run: Path,
    proxy_order: list[str],
    rounds: AdaptiveResult | None = None,
) -> list[PairInterval]:
    """Every adjacent pair of the proxy's ranking, of each baseline's and of the ground truth's (best
    fine-tune per candidate), with its paired interval over the dev rows."""
    dev_bytes = _dev_bytes(run)
    if dev_bytes is None:
        return []
    hib = get_metric(cfg.eval.metric).higher_is_better
    conf = cfg.confidence
    out: list[PairInterval] = []
    if rounds:
        out += _round_pairs(proxy_order, rounds, dev_bytes, cfg)
    else:
        out += adjacent_pairs("proxy", proxy_order, _by_candidate(records, "proxy"), dev_bytes, conf)
    for method in (*BASELINES, "full"):
        scores = _scores(records, method)
        order = sorted(scores, key=lambda c: -scores[c] if hib else scores[c])
        out += adjacent_pairs(method, order, _by_candidate(records, method), dev_bytes, conf)  # type: ignore[arg-type]
    return out


def versus_pick(
    cfg: SelectConfig,
    records: list[UnitRecord],
    run: Path,
    pick: str | None,
    rounds: AdaptiveResult | None = None,
) -> list[PairInterval]:
    """Per ranking (proxy, baselines, ground truth), the proxy's pick against every other candidate;
    adaptive proxies are compared in the last round both ran."""
    dev_bytes = _dev_bytes(run)
    if dev_bytes is None or pick is None:
        return []
    out = []
    for method in ("proxy", *BASELINES, "full"):
        if method == "proxy" and rounds:
            last = rounds.last_records()
            for c in rounds.trail.ranking:
                if c == pick:
                    continue
                r = min(last[pick][0], last[c][0])
                a, b = rounds.records.get((r, pick)), rounds.records.get((r, c))
                p = (
                    pair_interval("proxy", [a], [b], dev_bytes, cfg.confidence, round_index=r)
                    if a and b
                    else None
                )
                out += [p] if p is not None else []
            continue
        mine = _by_candidate(records, method)
        if pick not in mine:
            continue
        for c in mine:
            if c != pick:
                p = pair_interval(method, mine[pick], mine[c], dev_bytes, cfg.confidence)  # type: ignore[arg-type]
                out += [p] if p is not None else []
    return out


def _round_pairs(order: list[str], rounds: AdaptiveResult, dev_bytes: list[int], cfg) -> list[PairInterval]:
    """Adjacent pairs of an adaptive ranking, each compared in the last round both candidates ran."""
    last = rounds.last_records()
    out = []
    for a, b in zip(order, order[1:], strict=False):
        r = min(last[a][0], last[b][0])
        ra, rb = rounds.records.get((r, a)), rounds.records.get((r, b))
        if ra is None or rb is None:
            continue
        p = pair_interval("proxy", [ra], [rb], dev_bytes, cfg.confidence, round_index=r)
        if p is not None:
            out.append(p)
    return out


def _by_candidate(records: list[UnitRecord], method: str) -> dict[str, list[UnitRecord]]:
    return {r.candidate: [r] for r in records if r.method == method and r.status == "ok"}
