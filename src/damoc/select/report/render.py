"""The leaderboard as text: a terminal table and report.md, rendered from the typed records only."""

from __future__ import annotations

from damoc.data.compress.records import rate_text
from damoc.select.adaptive import Resources, estimate_wall_s
from damoc.select.records import (
    METHOD_TITLES,
    METHODS,
    AdaptiveTrail,
    BoardSettings,
    Cost,
    DataRecord,
    Leaderboard,
    PairInterval,
    UnitRecord,
)
from damoc.select.report.compute import best_full
from damoc.train.finetune import FinetuneConfig

RANKED = ("proxy", "zero_shot", "few_shot", "full")


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return f"{_no_negative_zero(x, digits):.{digits}f}"


def _no_negative_zero(x: float, digits: int) -> float:
    return 0.0 if round(x, digits) == 0 else x


def _signed(x: float, digits: int = 4) -> str:
    return f"{_no_negative_zero(x, digits):+.{digits}f}".replace("-", "−")


def _methods_present(board: Leaderboard) -> list[str]:
    return [m for m in METHODS if any(m in r.scores for r in board.rows)]


# --- how sure: adjacent pairs --------------------------------------------------------------------------


def pair_verdict(p: PairInterval) -> str:
    return "separated" if p.separated else "tied within noise"


def to_separate(p: PairInterval) -> str:
    """What would likely separate a tied pair, in words ("" for a separated pair)."""
    if p.separated:
        return ""
    parts = []
    if p.rows_needed is not None:
        parts.append(f"about {p.rows_needed} dev rows ({p.rows_needed - p.n_rows} more)")
    if p.seeds_needed is not None:
        parts.append(f"about {p.seeds_needed} proxy seeds ({p.seeds_needed - p.n_seeds} more)")
    if not parts:
        return "no difference seen" if p.gap == 0 else "more dev rows alone would likely not"
    return " or ".join(parts) + " would likely separate them"


def pair_line(p: PairInterval, unit: str) -> str:
    """One pair in words: who is ahead, by how much, the interval, the probability, the verdict."""
    where = f" (round {p.round}, {p.n_rows} dev rows)" if p.round is not None else ""
    seeds = f" × {p.n_seeds} seeds" if p.n_seeds > 1 else ""
    approx = " (per-row mean)" if p.approximate else ""
    hint = to_separate(p)
    return (
        f"{p.ahead} ahead of {p.behind} by {_fmt(p.gap)} {unit}{approx}, "
        f"{p.level:.0%} interval [{_signed(p.ci_low)}, {_signed(p.ci_high)}]{seeds}, "
        f"P(order) {p.p_order:.2f}: {pair_verdict(p)}{where}" + (f"; {hint}" if hint else "")
    )


def chain(board: Leaderboard, method: str) -> str | None:
    """A ranking as a chain: ``a > b ≈ c`` (``≈``: tied within noise at the run's level)."""
    pairs = board.pairs_of(method)  # type: ignore[arg-type]
    if not pairs:
        return None
    out = pairs[0].ahead
    for p in pairs:
        out += f" {'>' if p.separated else '≈'} {p.behind}"
    return out


def _unit(board: Leaderboard) -> str:
    return "bits/byte" if board.metric == "answer_bpb" else board.metric


def _vs_next(board: Leaderboard) -> dict[str, str]:
    """Per candidate, the table cell on the proxy pair it heads: P(order), and "tied" when tied."""
    out = {}
    for p in board.pairs_of("proxy"):
        out[p.ahead] = f"{p.p_order:.2f}" + ("" if p.separated else " tied")
    return out


def pick_note(board: Leaderboard) -> str | None:
    """The top pick's standing against the runner-up, in one sentence."""
    pairs = board.pairs_of("proxy")
    if not pairs:
        return None
    p = pairs[0]
    if p.separated:
        return f"{p.ahead} is separated from the runner-up {p.behind} (P(order) {p.p_order:.2f})."
    hint = to_separate(p)
    return f"{p.ahead} and {p.behind} are tied within noise (P(order) {p.p_order:.2f})" + (
        f": {hint}." if hint else "."
    )


# --- the table -----------------------------------------------------------------------------------------


def table_rows(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    methods = _methods_present(board)
    adaptive = board.adaptive is not None
    vs_next = _vs_next(board)
    head = [
        "rank",
        "candidate",
        *[METHOD_TITLES[m] for m in methods],
        *(["P(> next)"] if vs_next else []),
        *(["round"] if adaptive else []),
        "proxy s",
        "layers cut",
        "status",
    ]
    body = []
    for r in board.rows:
        status = "; ".join(f"{METHOD_TITLES[m]}: {e}" for m, e in r.errors.items()) or "ok"
        if r.dropped and status == "ok":
            status = f"dropped after round {r.round}"
        body.append(
            [
                str(r.rank) if r.rank else "—",
                r.candidate,
                *[_fmt(r.scores.get(m)) for m in methods],
                *([vs_next.get(r.candidate, "")] if vs_next else []),
                *([str(r.round) if r.round is not None else "—"] if adaptive else []),
                _fmt(r.proxy_wall_s, 1),
                str(len(r.layers_removed)),
                status,
            ]
        )
    return head, body


def disagreement(board: Leaderboard) -> str | None:
    """A warning when the baselines of the uncompressed candidates agree on a winner the proxy does not pick.

    On small models the proxy's layer removal can hurt one architecture far more than another; where the
    few-shot (and zero-shot) ranking disagrees with it, the pick deserves a check (--validate)."""
    picks = {}
    for method in ("proxy", "zero_shot", "few_shot"):
        scored = {r.candidate: r.scores[method] for r in board.rows if r.scores.get(method) is not None}
        if len(scored) >= 2:
            best = max if board.higher_is_better else min
            picks[method] = best(scored, key=scored.get)  # type: ignore[arg-type]
    if board.adaptive is not None and board.best():  # adaptive scores of different rounds: its rank 1
        picks["proxy"] = board.best()
    base = {picks[m] for m in ("zero_shot", "few_shot") if m in picks}
    if "proxy" not in picks or len(base) != 1 or picks["proxy"] in base:
        return None
    names = " and ".join(METHOD_TITLES[m] for m in ("zero_shot", "few_shot") if m in picks)
    return (
        f"note: the proxy picks {picks['proxy']}, the {names} baseline picks {base.pop()}; "
        "validate before trusting either (--validate)"
    )


def compression_note(board: Leaderboard) -> str | None:
    """A warning naming the candidates the proxy left worse than their uncompressed zero-shot score."""
    if not board.compression_check:
        return None
    names = ", ".join(
        f"{r.candidate} ({_fmt(r.scores.get('proxy'))} vs {_fmt(r.scores.get('zero_shot'))})"
        for r in board.rows
        if r.candidate in board.compression_check
    )
    return (
        f"check: proxy worse than the uncompressed model zero-shot for {names}: the proxy fine-tune did not undo "
        "the compression, so this ranking may reflect the compression more than how each model fine-tunes "
        "(remove fewer layers: model.layer_fraction; train the proxy longer: proxy.epochs; or --validate)"
    )


def failure_hint(board: Leaderboard) -> str | None:
    """How to rerun the failed units only (a resumed run keeps failures unless told to retry them)."""
    failed = [
        c for c in board.candidates if any(r.candidate == c and r.status != "ok" for r in board.records)
    ]
    if not failed:
        return None
    return (
        f"failed: {', '.join(failed)} (the status column says why); to rerun only the failed units, "
        "fix the cause and run the same command with --resume --retry-failed"
    )


def render_table(board: Leaderboard) -> str:
    """A plain-text table for the terminal, with how sure each ranking is."""
    head, body = table_rows(board)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    direction = "higher" if board.higher_is_better else "lower"
    out = [f"{board.task} · metric {board.metric} ({direction} is better)", line(head)]
    out += [line(b) for b in body]
    sure = _terminal_confidence(board)
    if sure:
        out += ["", *sure]
    if board.adaptive is not None:
        out += ["", *_terminal_trail(board.adaptive, board)]
    if board.agreement:
        out.append("")
        out.append(
            "agreement with the full fine-tune: "
            + "; ".join(
                f"{METHOD_TITLES[a.method]} τ={_fmt(a.kendall, 2)} top-1 {'hit' if a.top1_hit else 'miss'}"
                for a in board.agreement
            )
        )
    if board.cost:
        c = board.cost
        cost = f"cost ratio (full ÷ proxy): wall {c.wall_ratio:.1f}x, tokens {c.token_ratio:.1f}x"
        projection = projection_line(c)
        if projection is not None:
            cost += f"; {projection}"
        out.append(cost)
    notes = [n for n in (disagreement(board), compression_note(board)) if n]
    if notes:
        out += ["", *notes]
    return "\n".join(out)


def _terminal_confidence(board: Leaderboard) -> list[str]:
    pairs = board.pairs_of("proxy")
    if not pairs:
        return []
    first = pairs[0]
    where = f"{first.n_rows} dev rows" if first.round is None else "the last round each pair shared"
    out = [f"how sure (proxy; paired bootstrap over {where}, {first.level:.0%}; ≈: tied within noise):"]
    out += [f"  {pair_line(p, _unit(board))}" for p in pairs]
    for method in RANKED[1:]:
        c = chain(board, method)
        if c:
            out.append(f"  {METHOD_TITLES[method]}: {c}")
    return out


def _terminal_trail(trail: AdaptiveTrail, board: Leaderboard) -> list[str]:
    out = [f"adaptive proxy: {len(trail.rounds)} of {len(trail.planned)} rounds; {trail.note}"]
    for rnd in trail.rounds:
        parts = []
        for status in ("dropped", "behind"):
            names = ", ".join(
                f"{e.candidate} (behind by {_fmt(e.gap)} [{_signed(e.ci_low or 0)}, {_signed(e.ci_high or 0)}])"
                for e in rnd.entries
                if e.status == status
            )
            if names:
                parts.append(f"{'dropped' if status == 'dropped' else 'clearly behind'} {names}")
        failed = [e.candidate for e in rnd.entries if e.status == "failed"]
        if failed:
            parts.append(f"failed {', '.join(failed)}")
        out.append(
            f"  round {rnd.round} ({rnd.rows} rows × {rnd.epochs:g} epochs, {rnd.dev_rows} dev rows, "
            f"{rnd.wall_s:.0f} unit-s): " + ("; ".join(parts) or "none dropped")
        )
    return out


# --- report.md -----------------------------------------------------------------------------------------


def _md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def render_markdown(board: Leaderboard) -> str:
    s = board.settings
    direction = "higher" if board.higher_is_better else "lower"
    parts = [
        f"# damoc select: {board.task}",
        "",
        f"Metric **{board.metric}** ({direction} is better) on {s.dev_rows} dev rows. "
        f"Best candidate by the proxy: **{board.best() or '—'}**."
        + (f" {note}" if (note := pick_note(board)) else ""),
        "",
        *([f"> {note}", ""] if (note := disagreement(board)) else []),
        *([f"> {note}", ""] if (note := compression_note(board)) else []),
        "## Leaderboard",
        "",
        _md_table(*table_rows(board)),
        "",
        "![leaderboard](leaderboard.png)",
        "",
    ]
    parts += _md_confidence(board)
    if board.adaptive is not None:
        parts += _md_trail(board.adaptive, board)
    parts += ["## Settings", "", *_settings_lines(s, board)]
    if board.agreement:
        parts += ["", "## Validation: agreement with the full fine-tune ranking", ""]
        head = ["method", "ranking", "Spearman ρ", "Kendall τ", "top-1 hit", "top-1 regret", "pairwise acc"]
        body = [
            [
                METHOD_TITLES[a.method],
                " > ".join(a.ranking),
                _fmt(a.spearman, 3),
                _fmt(a.kendall, 3),
                _fmt(a.top1_hit),
                _fmt(a.top1_regret),
                _fmt(a.pairwise_acc, 3),
            ]
            for a in board.agreement
        ]
        true = sorted(
            [
                r
                for r in best_full(board.records, board.higher_is_better)
                if r.method == "full" and r.status == "ok"
            ],
            key=lambda r: -r.score if board.higher_is_better else r.score,  # type: ignore[operator]
        )
        body.insert(0, ["full FT (truth)", " > ".join(r.candidate for r in true), "", "", "", "", ""])
        parts.append(_md_table(head, body))
    if board.cost:
        parts += _md_cost(board.cost)
    cached = [r.candidate for r in board.records if r.cached]
    if cached:
        parts += ["", f"Ground truth reused from the cache for: {', '.join(cached)}."]
    return "\n".join(parts) + "\n"


def _md_confidence(board: Leaderboard) -> list[str]:
    if not board.pairs:
        return []
    level = board.settings.confidence.level
    out = [
        "## How sure",
        "",
        f"Every adjacent pair of each ranking, compared on the same dev rows: the gap (how much better the "
        f"higher-ranked candidate scores, in {_unit(board)}), its {level:.0%} paired-bootstrap interval "
        f"({board.settings.confidence.n_boot} draws over the dev rows), and the share of draws that keep the "
        "order. A pair whose interval holds 0 is tied within noise; the last column projects the dev rows "
        "that would likely separate it (the gap kept, the spread shrinking as one over the rows).",
        "",
    ]
    head = ["ranking", "pair", "gap", "interval", "P(order)", "verdict", "to separate"]
    body = []
    for method in RANKED:
        for p in board.pairs_of(method):  # type: ignore[arg-type]
            where = f" (round {p.round})" if p.round is not None else ""
            body.append(
                [
                    METHOD_TITLES[method] + where,
                    f"{p.ahead} > {p.behind}",
                    _fmt(p.gap),
                    f"[{_signed(p.ci_low)}, {_signed(p.ci_high)}]",
                    f"{p.p_order:.2f}",
                    pair_verdict(p),
                    to_separate(p) or "—",
                ]
            )
    out += [_md_table(head, body), ""]
    if any(p.approximate for p in board.pairs):
        out += [
            f"{board.metric} pools rows by their answer tokens, which the records do not keep: these intervals "
            "are those of the per-row mean.",
            "",
        ]
    return out


def _md_trail(trail: AdaptiveTrail, board: Leaderboard) -> list[str]:
    out = [
        "## Adaptive proxy: the rounds",
        "",
        f"Every candidate started on a small proxy; after each round, a candidate whose {trail.level:.0%} paired "
        "interval against the round's leader lay above zero (clearly worse) was dropped, and the others went "
        f"on to a larger proxy. Planned: {len(trail.planned)} rounds "
        + ", ".join(f"{r} rows × {e:g} epochs / {d} dev rows" for r, e, d in trail.planned)
        + f" (the last is the full proxy). Stopped: {trail.note}. Spent: {trail.wall_s:.1f} unit-seconds, "
        f"{trail.train_tokens} fine-tune tokens"
        + (f" (budget {trail.budget_s:g} s)" if trail.budget_s else "")
        + (f" (cap {trail.max_train_tokens} tokens)" if trail.max_train_tokens else "")
        + ".",
        "",
    ]
    fixed = full_proxy_estimate(trail)
    if fixed is not None:
        out += [
            f"The full proxy for every candidate would have taken about {fixed:.1f} unit-seconds (each "
            "candidate's last round scaled to the full proxy's size): the rounds took "
            f"{trail.wall_s / max(1e-9, fixed):.2f}x that.",
            "",
        ]
    head = [
        "round",
        "size",
        "candidate",
        "score",
        "behind leader",
        "interval",
        "P(leader better)",
        "status",
        "s",
        "train tokens",
    ]
    body = []
    for rnd in trail.rounds:
        for e in rnd.entries:
            body.append(
                [
                    str(rnd.round),
                    f"{rnd.rows} rows × {rnd.epochs:g} ep, {rnd.dev_rows} dev",
                    e.candidate,
                    _fmt(e.score),
                    _fmt(e.gap),
                    "—" if e.ci_low is None else f"[{_signed(e.ci_low)}, {_signed(e.ci_high or 0)}]",
                    _fmt(e.p_behind, 2),
                    e.status if e.status != "failed" else f"failed: {e.error}",
                    f"{e.wall_s:.1f}",
                    str(e.train_tokens),
                ]
            )
    return out + [_md_table(head, body), ""]


def full_proxy_estimate(trail: AdaptiveTrail) -> float | None:
    """Unit-seconds the full proxy would have taken for every candidate that ran a round: measured for
    those that reached it, else their last round scaled up (damoc.select.adaptive.estimate_wall_s)."""
    if not trail.rounds or not trail.planned:
        return None
    full = Resources(*trail.planned[-1])
    last: dict[str, tuple[Resources, float, dict[str, float]]] = {}
    for rnd in trail.rounds:
        res = Resources(rnd.rows, rnd.epochs, rnd.dev_rows)
        for e in rnd.entries:
            if e.status != "failed":
                last[e.candidate] = (res, e.wall_s, e.stage_s)
    return sum(w if res == full else estimate_wall_s(res, full, w, st) for res, w, st in last.values())


def _settings_lines(s: BoardSettings, board: Leaderboard) -> list[str]:
    parts = [
        f"- training split: {s.train_rows} rows; proxy subset: {s.proxy_rows} rows "
        f"(filter {s.filter}, budget {s.budget}; token compression rate {s.compress_rate}; "
        f"rewrite {'on' if s.rewrite else 'off'})",
        f"- model: {s.layer_fraction:.0%} of the decoder layers removed, merge {s.merge or 'default'}",
    ]
    if s.calibrated is not None:
        parts.append(f"- then cross-calibrated compression: {_calibrated(s, board.records)}")
    if s.proxy_finetune is not None:
        parts.append(f"- proxy fine-tune: {_ft(s.proxy_finetune)}")
    if s.full_finetune is not None:
        ft = s.full_finetune
        parts.append(
            f"- ground truth: full fine-tune of the uncompressed candidates on all {s.train_rows} "
            f"training rows (bounded): {_ft(ft, grid=bool(s.truth_lr_grid))}"
        )
        if s.truth_lr_grid:
            chosen = ", ".join(f"{c} {lr:g}" for c, lr in s.truth_lr.items() if lr is not None)
            parts.append(
                f"- ground-truth learning rate: the best dev score of each candidate over the grid "
                f"{', '.join(f'{lr:g}' for lr in s.truth_lr_grid)} (chosen: {chosen}); the cost below "
                "counts the chosen run only"
            )
    precisions = [s.eval.precision if s.eval else "fp32", s.truth_eval_precision or "fp32"]
    if precisions != ["fp32", "fp32"]:
        parts.append(
            f"- dev scoring: {precisions[0]} for the proxies and baselines"
            + (f", {precisions[1]} for the ground truth" if s.full_finetune is not None else "")
            + " (bf16: autocast matmuls)"
        )
    d = board.data
    if d.stage_s:
        parts.append("- data stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in d.stage_s.items()))
    if d.achieved_rate is not None:
        parts.append(f"- token compression: {compress_rate_text(d)}")
    return parts


def _md_cost(c: Cost) -> list[str]:
    parts = [
        "",
        "## Cost (full sweep ÷ proxy sweep)",
        "",
        _md_table(
            ["", "full sweep", "proxy sweep", "ratio"],
            [
                [
                    "wall time, s (all)",
                    f"{c.full_wall_s:.1f}",
                    f"{c.proxy_wall_s:.1f}",
                    f"{c.wall_ratio:.1f}x",
                ],
                ["tokens (all)", str(c.full_tokens), str(c.proxy_tokens), f"{c.token_ratio:.1f}x"],
                [
                    "CPU time, s (all)",
                    _fmt(c.full_cpu_s, 1),
                    _fmt(c.proxy_cpu_s, 1),
                    f"{c.cpu_ratio:.1f}x" if c.cpu_ratio else "—",
                ],
                [
                    "wall time, s (training side)",
                    f"{c.full_train_wall_s:.1f}",
                    f"{c.proxy_train_wall_s:.1f}",
                    f"{c.train_wall_ratio:.1f}x",
                ],
                [
                    "tokens (training side)",
                    str(c.full_train_tokens),
                    str(c.proxy_train_tokens),
                    f"{c.train_token_ratio:.1f}x",
                ],
                *_peak_rows(c),
            ],
        ),
        "",
        "All: every unit's load, pruning, training and dev scoring, plus the shared data stages for the "
        "proxy. Training side: fine-tuning only for the full sweep; data stages + layer pruning + "
        "fine-tuning for the proxy sweep.",
    ]
    return parts + _cost_breakdown(c)


def _peak_rows(c: Cost) -> list[list[str]]:
    """Cost-table rows for the largest one-unit memory peak of each sweep (where both were recorded)."""
    rows = []
    for label, full, proxy in (
        ("peak memory of one unit, GB (resident)", c.full_peak_rss_mb, c.proxy_peak_rss_mb),
        ("peak memory of one unit, GB (GPU)", c.full_peak_gpu_mb, c.proxy_peak_gpu_mb),
    ):
        if full is not None and proxy is not None:
            rows.append(
                [label, f"{full / 1024:.2f}", f"{proxy / 1024:.2f}", f"{full / max(1e-9, proxy):.1f}x"]
            )
    return rows


def projection_line(c: Cost) -> str | None:
    """One terminal clause on where the wall ratio goes with more training rows (a projection)."""
    if c.growing_wall_s is None:
        return None
    if c.fixed_budget:
        return f"about {c.projected_wall_ratio(2.0):.1f}x with twice the training rows (projected, see report.md)"
    return f"tends to {c.wall_ratio_limit:.1f}x with more training rows (projected, see report.md)"


def _cost_breakdown(c: Cost) -> list[str]:
    """Where each sweep's wall time went, and what the ratio does with more training rows."""
    if not c.full_stage_s or not c.proxy_stage_s:
        return []

    def stages(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in d.items())

    out = [
        "",
        f"Where the time went (wall s, summed over candidates): full sweep: {stages(c.full_stage_s)}; "
        f"proxy sweep: {stages(c.proxy_stage_s)}.",
    ]
    if c.growing_wall_s is None:
        return out
    if not c.fixed_budget:
        out.append(
            "With more training rows (the same dev split, the proxy subset the same fraction of them) only the "
            "fine-tunes and the data stages grow; model load, layer removal and dev scoring stay. From this "
            f"run's parts the wall ratio tends to **{c.wall_ratio_limit:.1f}x** (full fine-tunes ÷ (data stages + proxy "
            "fine-tunes)): a projection from the measured parts, not a measurement."
        )
    else:
        out.append(
            "The proxy subset is a fixed number of rows (data.budget), so with more training rows (the same "
            "dev split) only the full fine-tunes and the filter's pass over the rows grow: from this run's "
            f"parts the wall ratio would be about **{c.projected_wall_ratio(2.0):.1f}x** with twice the "
            f"training rows and **{c.projected_wall_ratio(4.0):.1f}x** with four times: a projection from the "
            "measured parts, not a measurement."
        )
    return out


def _calibrated(s: BoardSettings, records: list[UnitRecord]) -> str:
    """One line: the method and its target, the mixing, and the achieved numbers per candidate."""
    c = s.calibrated
    assert c is not None
    if c.method in ("gptq", "rtn"):
        target = f"{c.quant.bits}-bit, group {c.quant.group_size}"
    else:
        target = f"pattern {c.prune.pattern}" if c.prune.pattern else f"sparsity {c.prune.sparsity or 0.5:g}"
    last = {r.candidate: r for r in records if r.method == "proxy" and r.compression}  # the last round's
    achieved = [
        f"{r.candidate} sparsity {r.compression['sparsity']:.3f}"
        + (
            f", rel. error {r.compression['mean_rel_error']:.4f}"
            if r.compression.get("mean_rel_error")
            else ""
        )
        for r in last.values()
        if r.compression
    ]
    mix = f"α = {c.alpha:g} (general '{c.general}' + the task's training subset)"
    return f"{c.method}, {target}, {mix}" + (f"; achieved: {'; '.join(achieved)}" if achieved else "")


def compress_rate_text(d: DataRecord) -> str:
    """The compression stage's achieved rate, as `damoc compress` and its log print it."""
    summary = d.summaries.get("compress") or {}
    if "segment_rates" not in summary:  # a record written before the rate was defined once
        return f"achieved rate {d.achieved_rate:.3f}"
    return rate_text(summary)


def _ft(ft: FinetuneConfig, grid: bool = False) -> str:
    steps = f", max {ft.max_steps} steps" if ft.max_steps else ""
    budget = f", token budget {ft.token_budget}" if ft.token_budget else ""
    lr = "from the grid below" if grid or ft.lr is None else ft.lr
    return (
        f"{ft.method}, {ft.epochs} epoch(s){steps}{budget}, batch {ft.batch_size} × "
        f"{ft.max_length} tokens, lr {lr}"
    )


__all__ = [
    "chain",
    "compression_note",
    "disagreement",
    "failure_hint",
    "pair_line",
    "projection_line",
    "render_markdown",
    "render_table",
    "table_rows",
]
