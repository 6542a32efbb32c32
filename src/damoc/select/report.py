"""Leaderboard from records, and its renderings: JSON, Markdown, a PNG plot, a terminal table."""

from __future__ import annotations

import math
from pathlib import Path

from damoc.io.files import write_json_atomic, write_text_atomic
from damoc.select.checks import compression_check
from damoc.select.config import SelectConfig
from damoc.select.ranking import agreement
from damoc.select.records import (
    METHOD_TITLES,
    METHODS,
    Agreement,
    Cost,
    DataRecord,
    Leaderboard,
    Row,
    UnitRecord,
)


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
    cfg: SelectConfig, data: DataRecord, records: list[UnitRecord], run: Path
) -> Leaderboard:
    from damoc.evaluate.metrics import get_metric

    metric = get_metric(cfg.eval.metric)
    hib = metric.higher_is_better
    all_records, records = records, best_full(records, hib)
    proxy = _scores(records, "proxy")
    order = sorted(proxy, key=lambda c: metric.sort_key(proxy[c]))
    rows = []
    for cand in cfg.candidates:
        mine = {r.method: r for r in records if r.candidate == cand}
        p = mine.get("proxy")
        rows.append(
            Row(
                rank=order.index(cand) + 1 if cand in proxy else None,
                candidate=cand,
                slug=next(iter(mine.values())).slug if mine else "",
                scores={m: mine[m].score if mine[m].status == "ok" else None for m in METHODS if m in mine},
                errors={m: mine[m].error or "" for m in METHODS if m in mine and mine[m].status != "ok"},
                proxy_wall_s=p.wall_s if p else None,
                proxy_tokens=p.tokens if p else None,
                layers_removed=p.layers_removed if p else [],
                n_params=p.n_params if p else None,
            )
        )
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0))
    true = _scores(records, "full")
    agreements: list[Agreement] = []
    if true:
        for method in ("proxy", "zero_shot", "few_shot"):
            pred = _scores(records, method)
            if pred:
                agreements.append(agreement(method, pred, true, hib))  # type: ignore[arg-type]
    settings = {
        "train_rows": data.n_train,
        "dev_rows": data.n_dev,
        "proxy_rows": data.n_proxy_train,
        "filter": cfg.data.filter,
        "budget": cfg.data.budget,
        "compress_rate": cfg.data.compress_rate,
        "rewrite": cfg.data.rewrite,
        "layer_fraction": cfg.model.layer_fraction,
        "merge": cfg.model.merge,
        "calibrated": None if cfg.model.calibrated is None else cfg.model.calibrated.model_dump(mode="json"),
        "proxy_finetune": cfg.proxy.model_dump(mode="json"),
        "eval": cfg.eval.model_dump(mode="json"),
        "validate": cfg.validate_.enabled,
        "full_finetune": cfg.validate_.finetune.model_dump(mode="json") if cfg.validate_.enabled else None,
        "truth_lr_grid": cfg.validate_.lr_grid if cfg.validate_.enabled else None,
        "truth_eval_precision": cfg.validate_.eval_precision if cfg.validate_.enabled else None,
        "truth_lr": {r.candidate: r.lr for r in records if r.method == "full" and r.status == "ok"},
        "backend": cfg.run.backend,
    }
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
        else compression_check(proxy, _scores(records, "zero_shot"), hib, cfg.compression_check),
        settings=settings,
        run_dir=str(run),
    )


# --- renderings ------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return f"{x:.{digits}f}"


def _methods_present(board: Leaderboard) -> list[str]:
    return [m for m in METHODS if any(m in r.scores for r in board.rows)]


def table_rows(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    methods = _methods_present(board)
    head = ["rank", "candidate", *[METHOD_TITLES[m] for m in methods], "proxy s", "layers cut", "status"]
    body = []
    for r in board.rows:
        status = "; ".join(f"{METHOD_TITLES[m]}: {e}" for m, e in r.errors.items()) or "ok"
        body.append(
            [
                str(r.rank) if r.rank else "—",
                r.candidate,
                *[_fmt(r.scores.get(m)) for m in methods],
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
    """A plain-text table for the terminal."""
    head, body = table_rows(board)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    direction = "higher" if board.higher_is_better else "lower"
    out = [f"{board.task} · metric {board.metric} ({direction} is better)", line(head)]
    out += [line(b) for b in body]
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
        line = f"cost ratio (full ÷ proxy): wall {c.wall_ratio:.1f}x, tokens {c.token_ratio:.1f}x"
        projection = projection_line(c)
        if projection is not None:
            line += f"; {projection}"
        out.append(line)
    notes = [n for n in (disagreement(board), compression_note(board)) if n]
    if notes:
        out += ["", *notes]
    return "\n".join(out)


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
        f"Metric **{board.metric}** ({direction} is better) on {s['dev_rows']} dev rows. "
        f"Best candidate by the proxy: **{board.best() or '—'}**.",
        "",
        *([f"> {note}", ""] if (note := disagreement(board)) else []),
        *([f"> {note}", ""] if (note := compression_note(board)) else []),
        "## Leaderboard",
        "",
        _md_table(*table_rows(board)),
        "",
        "![leaderboard](leaderboard.png)",
        "",
        "## Settings",
        "",
        f"- training split: {s['train_rows']} rows; proxy subset: {s['proxy_rows']} rows "
        f"(filter {s['filter']}, budget {s['budget']}; token compression rate {s['compress_rate']}; "
        f"rewrite {'on' if s['rewrite'] else 'off'})",
        f"- model: {s['layer_fraction']:.0%} of the decoder layers removed, merge {s['merge'] or 'default'}",
    ]
    if s.get("calibrated"):
        parts.append(f"- then cross-calibrated compression: {_calibrated(s['calibrated'], board.records)}")
    parts.append(f"- proxy fine-tune: {_ft(s['proxy_finetune'])}")
    if s.get("full_finetune"):
        parts.append(
            f"- ground truth: full fine-tune of the uncompressed candidates on all {s['train_rows']} "
            f"training rows (bounded): {_ft({**s['full_finetune'], 'lr': None} if s.get('truth_lr_grid') else s['full_finetune'])}"
        )
        if s.get("truth_lr_grid"):
            chosen = ", ".join(f"{c} {lr:g}" for c, lr in (s.get("truth_lr") or {}).items() if lr is not None)
            parts.append(
                f"- ground-truth learning rate: the best dev score of each candidate over the grid "
                f"{', '.join(f'{lr:g}' for lr in s['truth_lr_grid'])} (chosen: {chosen}); the cost below "
                "counts the chosen run only"
            )
    precisions = [s.get("eval", {}).get("precision", "fp32"), s.get("truth_eval_precision") or "fp32"]
    if precisions != ["fp32", "fp32"]:
        parts.append(
            f"- dev scoring: {precisions[0]} for the proxies and baselines"
            + (f", {precisions[1]} for the ground truth" if s.get("full_finetune") else "")
            + " (bf16: autocast matmuls)"
        )
    d = board.data
    if d.stage_s:
        parts.append("- data stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in d.stage_s.items()))
    if d.achieved_rate is not None:
        parts.append(f"- token compression: {compress_rate_text(d)}")
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
        c = board.cost
        parts += [
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
        parts += _cost_breakdown(c)
    cached = [r.candidate for r in board.records if r.cached]
    if cached:
        parts += ["", f"Ground truth reused from the cache for: {', '.join(cached)}."]
    return "\n".join(parts) + "\n"


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


def _calibrated(c: dict, records: list[UnitRecord]) -> str:
    """One line: the method and its target, the mixing, and the achieved numbers per candidate."""
    if c["method"] in ("gptq", "rtn"):
        target = f"{c['quant']['bits']}-bit, group {c['quant']['group_size']}"
    else:
        target = (
            f"pattern {c['prune']['pattern']}"
            if c["prune"].get("pattern")
            else (f"sparsity {c['prune'].get('sparsity') or 0.5:g}")
        )
    achieved = [
        f"{r.candidate} sparsity {r.compression['sparsity']:.3f}"
        + (
            f", rel. error {r.compression['mean_rel_error']:.4f}"
            if r.compression.get("mean_rel_error")
            else ""
        )
        for r in records
        if r.method == "proxy" and r.compression
    ]
    mix = f"α = {c['alpha']:g} (general '{c['general']}' + the task's training subset)"
    return f"{c['method']}, {target}, {mix}" + (f"; achieved: {'; '.join(achieved)}" if achieved else "")


def compress_rate_text(d: DataRecord) -> str:
    """The compression stage's achieved rate, as `damoc compress` and its log print it."""
    from damoc.data.compress.records import rate_text

    summary = d.summaries.get("compress") or {}
    if "segment_rates" not in summary:  # a record written before the rate was defined once
        return f"achieved rate {d.achieved_rate:.3f}"
    return rate_text(summary)


def _ft(d: dict) -> str:
    steps = f", max {d['max_steps']} steps" if d.get("max_steps") else ""
    budget = f", token budget {d['token_budget']}" if d.get("token_budget") else ""
    return (
        f"{d['method']}, {d['epochs']} epoch(s){steps}{budget}, batch {d['batch_size']} × "
        f"{d['max_length']} tokens, lr {d['lr'] if d.get('lr') is not None else 'from the grid below'}"
    )


def plot_leaderboard(board: Leaderboard, path: str | Path) -> Path:
    """Bar chart: proxy score (with baselines/truth where present) and proxy cost per candidate."""
    from damoc.errors import require

    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = board.rows
    names = [r.candidate for r in rows]
    methods = _methods_present(board)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(rows) + 4), 4))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        ys = [r.scores.get(m) for r in rows]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(rows))]
        ax1.bar(xs, [y if y is not None else 0 for y in ys], width, label=METHOD_TITLES[m])
    ax1.set_xticks(range(len(rows)), names, rotation=20, ha="right", fontsize=8)
    ax1.set_ylabel(f"{board.metric} ({'higher' if board.higher_is_better else 'lower'} is better)")
    ax1.set_title("score per candidate")
    if methods:  # a run with no scores yet has nothing to label
        ax1.legend(fontsize=8)
    ax2.bar(range(len(rows)), [r.proxy_wall_s or 0 for r in rows], color="tab:gray")
    ax2.set_xticks(range(len(rows)), names, rotation=20, ha="right", fontsize=8)
    ax2.set_ylabel("proxy wall time, s")
    ax2.set_title("proxy cost per candidate")
    fig.suptitle(f"damoc select: {board.task}")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_reports(board: Leaderboard, run: str | Path) -> None:
    run = Path(run)
    write_json_atomic(run / "leaderboard.json", board.model_dump(mode="json"))
    write_text_atomic(run / "report.md", render_markdown(board))
    plot_leaderboard(board, run / "leaderboard.png")
