"""Filters judged by ranking stability: does the candidates' proxy ranking survive the filtered subset?

For each data filter at one row budget, the same proxy sweep (``damoc select`` with its filter set to
that method and no baselines) ranks the candidates on the filtered subset; a reference sweep ranks them
on the whole training split with the same proxy settings. Each filter's ranking is compared with the
reference's (and with a ground truth when one is given): Kendall τ, top-1 hit and regret, pairwise
accuracy, and the cost of the sweep (filter time plus the candidates' proxy units). DaMoC (arXiv
2509.01221) judges its data filters this way: a filter is good when the ranking it gives on less data
stays the ranking of the full data.

Run directory::

    runs/whole/, runs/<filter>/   one selection run each (resumable: records are reused)
    ranking.json                  FilterRankingReport
    ranking.md, ranking.png       the table and a plot of τ against cost

A truth is a JSON file ``{"scores": {candidate: score}, "higher_is_better": bool}``, the
``leaderboard.json`` of a ``damoc select --validate`` run, or a directory of its full fine-tune records
(``UnitRecord`` JSON files; per candidate the best successful one is used).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from damoc.config import StrictModel
from damoc.data.filters import FILTERS
from damoc.data.filters.run import CONTEXT_KEYS
from damoc.errors import DamocError, require
from damoc.io.files import read_json, write_json_atomic, write_text_atomic
from damoc.select.config import SelectConfig
from damoc.select.pipeline import check_candidates, run_select
from damoc.select.ranking import agreement
from damoc.select.records import Agreement, Leaderboard, Record, UnitRecord, now_iso

LOG = logging.getLogger(__name__)
WHOLE = "whole"  # the reference sweep's name: every training row


class FilterRankingConfig(StrictModel):
    """What to compare: the filters, their row budget, the proxy sweep, an optional truth.

    ``select`` carries the task, the candidates and the proxy settings (model, proxy, eval, run, seed);
    its ``data.filter`` and ``data.budget`` are replaced per filter, its baselines and validation are off.
    """

    select: SelectConfig
    filters: list[str]
    budget: int | float = 12  # rows kept by each filter (a count >= 1, or a fraction < 1)
    filter_options: dict[str, Any] = Field(default_factory=dict)  # passed to every filter that takes them
    truth: str | None = None  # a truth file or directory (see the module docstring)
    out: str

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one filter to compare")
        names = [FILTERS.entry(n).name for n in v]
        if len(set(names)) != len(names):
            raise ValueError("each filter may appear once")
        return names

    @field_validator("budget")
    @classmethod
    def _budget(cls, v):
        if v <= 0 or (v >= 1 and not float(v).is_integer()):
            raise ValueError("budget is a fraction in (0, 1) or a whole row count")
        return int(v) if v >= 1 else v


class FilterRankingRow(Record):
    """One sweep: the reference (``whole``) or one filter's subset."""

    method: str
    family: str | None = None
    rows: int = 0  # training rows the proxy saw
    filter_s: float = 0.0  # the filter's wall time
    proxy_s: float = 0.0  # wall time of the candidates' proxy units (load, fine-tune, score)
    proxy_cpu_s: float = 0.0
    scores: dict[str, float | None] = Field(default_factory=dict)  # proxy score per candidate
    ranking: list[str] = Field(default_factory=list)  # best first
    vs_whole: Agreement | None = None
    vs_truth: Agreement | None = None
    error: str | None = None

    @property
    def cost_s(self) -> float:
        return self.filter_s + self.proxy_s


class FilterRankingReport(Record):
    task: str
    metric: str
    higher_is_better: bool
    candidates: list[str]
    budget: float
    n_train: int
    n_dev: int
    rows: list[FilterRankingRow]
    truth: str | None = None
    truth_scores: dict[str, float] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=now_iso)

    def row(self, method: str) -> FilterRankingRow:
        return next(r for r in self.rows if r.method == method)


# ---------------------------------------------------------------- truth


def _best(records: list[UnitRecord], higher_is_better: bool) -> dict[str, float]:
    best: dict[str, float] = {}
    for r in records:
        if r.method != "full" or r.status != "ok" or r.score is None or not math.isfinite(r.score):
            continue
        cur = best.get(r.candidate)
        if cur is None or (r.score > cur if higher_is_better else r.score < cur):
            best[r.candidate] = float(r.score)
    return best


def load_truth(path: str | Path) -> tuple[dict[str, float], bool]:
    """``({candidate: true score}, higher_is_better)`` from a truth file or a directory of records."""
    p = Path(path).expanduser()
    if p.is_dir():
        recs = []
        for f in sorted(p.glob("*.json")):
            try:
                recs.append(UnitRecord.load(f))
            except (ValueError, OSError):
                continue
        full = [r for r in recs if r.method == "full"]
        if not full:
            raise DamocError(f"{p}: no full fine-tune records (UnitRecord JSON files with method 'full')")
        sizes = {(r.candidate, r.n_train, r.n_dev) for r in full}
        if len({c for c, _, _ in sizes}) != len(sizes):
            raise DamocError(
                f"{p}: a candidate has full fine-tunes of different sizes: give one task's records"
            )
        hib = full[0].higher_is_better
        return _best(full, hib), hib
    if not p.is_file():
        raise DamocError(f"truth {p} does not exist")
    try:
        data = read_json(p)
    except ValueError as exc:
        raise DamocError(f"{p}: not JSON ({exc})") from None
    if isinstance(data, dict) and "records" in data and "rows" in data:
        board = Leaderboard.model_validate(data)
        scores = _best(board.records, board.higher_is_better)
        if not scores:
            raise DamocError(f"{p}: the leaderboard has no full fine-tune scores (run it with --validate)")
        return scores, board.higher_is_better
    if isinstance(data, dict) and isinstance(data.get("scores"), dict) and "higher_is_better" in data:
        try:
            return {str(k): float(v) for k, v in data["scores"].items()}, bool(data["higher_is_better"])
        except (TypeError, ValueError):
            raise DamocError(f"{p}: 'scores' must map candidates to numbers") from None
    raise DamocError(
        f"{p}: a truth is {{'scores': {{candidate: score}}, 'higher_is_better': bool}}, a leaderboard.json "
        "or a directory of full fine-tune records"
    )


# ---------------------------------------------------------------- sweeps


def sweep_config(cfg: FilterRankingConfig, method: str) -> SelectConfig:
    """The selection run of one sweep: the filter (none for the reference), no baselines, no truth."""
    base = cfg.select
    data = base.data.model_copy(
        update={
            "filter": None if method == WHOLE else method,
            "budget": cfg.budget if method != WHOLE else base.data.budget,
            "filter_options": _options_for(method, cfg.filter_options) if method != WHOLE else {},
        }
    )
    run = base.run.model_copy(update={"run_dir": str(Path(cfg.out) / "runs" / method)})
    validate = base.validate_.model_copy(update={"enabled": False})
    return base.model_copy(
        update={
            "data": data,
            "run": run,
            "validate_": validate,
            "baselines": False,
            "compression_check": None,
        }
    )


def _options_for(method: str, options: dict[str, Any]) -> dict[str, Any]:
    own = FILTERS.get(method).Options.model_fields
    return {k: v for k, v in options.items() if k in own or k in CONTEXT_KEYS}


def _row(method: str, board: Leaderboard) -> FilterRankingRow:
    proxy = [r for r in board.records if r.method == "proxy"]
    scores = {c: None for c in board.candidates}
    for r in proxy:
        if r.status == "ok" and r.score is not None and math.isfinite(r.score):
            scores[r.candidate] = float(r.score)
    errors = [f"{r.candidate}: {r.error}" for r in proxy if r.status != "ok"]
    ok = {c: s for c, s in scores.items() if s is not None}
    ranking = sorted(ok, key=lambda c: -ok[c] if board.higher_is_better else ok[c])
    return FilterRankingRow(
        method=method,
        family=None if method == WHOLE else FILTERS.get(method).family,
        rows=board.data.n_proxy_train,
        filter_s=float(board.data.stage_s.get("filter", 0.0)),
        proxy_s=float(sum(r.wall_s for r in proxy)),
        proxy_cpu_s=float(sum(r.cpu_s for r in proxy)),
        scores=scores,
        ranking=ranking,
        error="; ".join(errors) or None,
    )


def _agree(pred: dict[str, float | None], ref: dict[str, float | None] | dict[str, float], hib: bool):
    p = {c: s for c, s in pred.items() if s is not None}
    t = {c: s for c, s in ref.items() if s is not None}
    if len([c for c in t if c in p]) < 2:
        return None
    return agreement("proxy", p, t, hib)


def run_filter_ranking(cfg: FilterRankingConfig, resume: bool = False) -> FilterRankingReport:
    """Run the reference sweep and one sweep per filter (each resumable), then compare the rankings."""
    truth: dict[str, float] = {}
    truth_hib: bool | None = None
    if cfg.truth:
        truth, truth_hib = load_truth(cfg.truth)
        missing = [c for c in cfg.select.candidates if c not in truth]
        if missing:
            raise DamocError(f"the truth has no score for {', '.join(missing)}")
    check_candidates(cfg.select.candidates)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise DamocError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise DamocError(f"{out} is not empty (pass --resume to continue it)")
    rows: list[FilterRankingRow] = []
    boards: dict[str, Leaderboard] = {}
    for method in [WHOLE, *cfg.filters]:
        scfg = sweep_config(cfg, method)
        LOG.info("filter comparison: %s sweep (%s)", method, scfg.run.run_dir)
        t0 = time.perf_counter()
        try:
            board = run_select(scfg, resume=True)
        except DamocError as exc:  # a filter that cannot run here is recorded; the others go on
            if method == WHOLE:
                raise
            rows.append(FilterRankingRow(method=method, error=str(exc)))
            continue
        LOG.info("filter comparison: %s done in %.0f s", method, time.perf_counter() - t0)
        boards[method] = board
        rows.append(_row(method, board))
    ref = boards[WHOLE]
    hib = ref.higher_is_better
    if truth_hib is not None and truth_hib != hib:
        raise DamocError(
            f"the truth's direction (higher_is_better={truth_hib}) differs from the metric {ref.metric}'s"
        )
    whole = next(r for r in rows if r.method == WHOLE)
    for r in rows:
        if r.error is not None and not r.scores:
            continue
        if r.method != WHOLE:
            r.vs_whole = _agree(r.scores, whole.scores, hib)
        if truth:
            r.vs_truth = _agree(r.scores, truth, hib)
    report = FilterRankingReport(
        task=ref.task,
        metric=ref.metric,
        higher_is_better=hib,
        candidates=list(cfg.select.candidates),
        budget=float(cfg.budget),
        n_train=ref.data.n_train,
        n_dev=ref.data.n_dev,
        rows=rows,
        truth=cfg.truth,
        truth_scores=truth,
        settings=cfg.model_dump(mode="json", by_alias=True),
    )
    write_json_atomic(out / "ranking.json", report.model_dump(mode="json"))
    write_text_atomic(out / "ranking.md", render_markdown(report))
    try:
        plot_ranking(report, out / "ranking.png")
    except DamocError as exc:  # no matplotlib: the table still stands
        LOG.warning("no plot: %s", exc)
    return report


# ---------------------------------------------------------------- rendering


def _fmt(x: float | None, nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _hit(a: Agreement | None) -> str:
    if a is None or a.top1_hit is None:
        return "–"
    return "hit" if a.top1_hit else f"miss ({_fmt(a.top1_regret, 3)})"


def render_markdown(r: FilterRankingReport) -> str:
    whole = r.row(WHOLE)
    lines = [
        f"# Filters by ranking stability on {r.task}",
        "",
        f"{len(r.candidates)} candidates, metric {r.metric} ({'higher' if r.higher_is_better else 'lower'} is "
        f"better), {r.n_train} training rows, {r.n_dev} dev rows; each filter keeps {r.budget:g} rows. "
        f"Reference: the same proxy on all {whole.rows} training rows (ranking {' > '.join(whole.ranking)}).",
        "",
    ]
    head = "| filter | family | rows | ranking | τ vs whole | top-1 vs whole |"
    sep = "|---|---|---:|---|---:|---|"
    if r.truth_scores:
        head += " τ vs truth | top-1 vs truth |"
        sep += "---:|---|"
    head += " filter s | proxy s | cost ÷ whole |"
    sep += "---:|---:|---:|"
    lines += [head, sep]
    for row in r.rows:
        if row.error and not row.scores:
            lines.append(f"| {row.method} | {row.family or ''} | – | failed: {row.error} |")
            continue
        cells = [
            row.method,
            row.family or "",
            str(row.rows),
            " > ".join(row.ranking),
            "1 (reference)" if row.method == WHOLE else _fmt(row.vs_whole.kendall if row.vs_whole else None),
            "–" if row.method == WHOLE else _hit(row.vs_whole),
        ]
        if r.truth_scores:
            cells += [_fmt(row.vs_truth.kendall if row.vs_truth else None), _hit(row.vs_truth)]
        cells += [_fmt(row.filter_s, 1), _fmt(row.proxy_s, 0), _fmt(row.cost_s / max(1e-9, whole.cost_s), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    if r.truth_scores:
        order = sorted(
            r.truth_scores, key=lambda c: -r.truth_scores[c] if r.higher_is_better else r.truth_scores[c]
        )
        lines += ["", f"Truth ({r.truth}): {' > '.join(order)}."]
    lines += [
        "",
        f"With {len(r.candidates)} candidates Kendall τ takes few values "
        "(three candidates: ±1 or ±1/3), and a random order has τ = 1 one time in six: one task and one seed "
        "rank filters only coarsely.",
    ]
    return "\n".join(lines) + "\n"


def plot_ranking(r: FilterRankingReport, path: str | Path) -> Path:
    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for key, marker, label in (
        ("vs_whole", "o", "τ vs the whole-set proxy"),
        ("vs_truth", "s", "τ vs the truth"),
    ):
        pts = [
            (row.cost_s, getattr(row, key).kendall, row.method)
            for row in r.rows
            if getattr(row, key) is not None
        ]
        pts = [p for p in pts if p[1] is not None]
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
        for x, y, name in pts:
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    whole = r.row(WHOLE)
    ax.axvline(whole.cost_s, color="grey", linestyle=":", label="whole-set proxy cost")
    ax.set_xlabel("cost of the sweep (filter + proxy units, wall s)")
    ax.set_ylabel("Kendall τ")
    ax.set_ylim(-1.1, 1.1)
    ax.set_title(f"{r.task}: {r.budget:g}-row filters, ranking of {len(r.candidates)} candidates")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


__all__ = [
    "FilterRankingConfig",
    "FilterRankingReport",
    "FilterRankingRow",
    "load_truth",
    "render_markdown",
    "run_filter_ranking",
    "sweep_config",
]
