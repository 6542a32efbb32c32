"""The leaderboard as a picture read at a glance (``leaderboard.png``).

Left: for the proxy and each baseline (and the ground truth when validated), how far each candidate scores
from the proxy's pick, with its paired interval: a dot per candidate on an axis of differences, 0 = the
pick, so an interval that crosses 0 is a tie and the size of a gap is read off the axis, not against bars
from zero. Middle: what the proxy cost per candidate (each adaptive round apart) and the baselines.
Right, for adaptive runs: each candidate's distance to the round's leader, round by round, until dropped.
"""

from __future__ import annotations

from pathlib import Path

from damoc.errors import require
from damoc.select.records import METHOD_TITLES, Leaderboard, PairInterval

MARKERS = {"proxy": "o", "zero_shot": "s", "few_shot": "D", "full": "*"}
COLORS = {"proxy": "tab:blue", "zero_shot": "tab:orange", "few_shot": "tab:green", "full": "tab:red"}


def _behind(p: PairInterval) -> tuple[float, float, float]:
    """(gap, low, high): how much worse than the pick the candidate scores (> 0: worse)."""
    return p.gap, p.ci_low, p.ci_high


FAR = 5.0  # a point further from 0 than this many times the median distance is drawn at the axis' edge


def axis_range(points: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """The axis range that shows the close candidates' gaps and intervals, with 0 in it.

    A candidate far behind the others (further out than ``FAR`` times the median distance) would squash
    every close call into a pixel: such points are left out of the range and drawn at its edge. None:
    nothing to draw."""
    if not points:
        return None
    ext = sorted(max(abs(lo), abs(hi), abs(g)) for g, lo, hi in points)
    med = ext[len(ext) // 2] if ext[len(ext) // 2] > 0 else max(ext)
    near = [(g, lo, hi) for g, lo, hi in points if max(abs(lo), abs(hi), abs(g)) <= FAR * med] or points
    lo = min(0.0, *(p[1] for p in near), *(p[0] for p in near))
    hi = max(0.0, *(p[2] for p in near), *(p[0] for p in near))
    pad = 0.08 * (hi - lo) or 1e-3
    return lo - pad, hi + pad


def _clip(x: float, rng: tuple[float, float]) -> float:
    return min(max(x, rng[0]), rng[1])


def plot_leaderboard(board: Leaderboard, path: str | Path) -> Path:
    """Write the leaderboard plot to ``path`` (atomically)."""
    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.candidate for r in board.rows]
    pick = board.best()
    methods = [
        m for m in ("proxy", "zero_shot", "few_shot", "full") if any(m in r.scores for r in board.rows)
    ]
    panels = 3 if board.adaptive is not None and board.adaptive.rounds else 2
    height = max(3.2, 0.55 * len(names) * max(1, len(methods)) ** 0.5 + 1.8)
    widths = [3.2, 1.6, 2.4][:panels]
    fig, axes = plt.subplots(
        1, panels, figsize=(4.2 * panels + 2, height), gridspec_kw={"width_ratios": widths}, squeeze=False
    )
    ax1, ax2 = axes[0][0], axes[0][1]
    _differences(ax1, board, names, pick, methods)
    _cost(ax2, board, names)
    if panels == 3:
        _rounds(axes[0][2], board)
    direction = "higher" if board.higher_is_better else "lower"
    fig.suptitle(f"damoc select: {board.task} · {board.metric} ({direction} is better)", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _differences(ax, board: Leaderboard, names: list[str], pick: str | None, methods: list[str]) -> None:
    """Per candidate and method: the gap to the proxy's pick with its paired interval (0 = the pick)."""
    level = board.settings.confidence.level
    vs = {(p.method, p.behind): p for p in board.versus_pick}
    n = max(1, len(methods))
    step = 0.7 / n
    rng = axis_range([_behind(p) for p in board.versus_pick]) or (-1.0, 1.0)
    for i, m in enumerate(methods):
        offset = (i - (n - 1) / 2) * step
        first = True
        for j, cand in enumerate(names):
            y = j + offset
            score = next((r.scores.get(m) for r in board.rows if r.candidate == cand), None)
            p = vs.get((m, cand))
            if score is None or (cand != pick and p is None):
                continue
            label = METHOD_TITLES[m] if first else None
            first = False
            if cand == pick:
                ax.plot([0], [y], MARKERS[m], color=COLORS[m], ms=7, label=label)
                continue
            assert p is not None
            gap, lo, hi = _behind(p)
            ax.plot([_clip(lo, rng), _clip(hi, rng)], [y, y], "-", color=COLORS[m], lw=2, alpha=0.55)
            face = COLORS[m] if lo > 0 or hi < 0 else "white"  # filled: the interval excludes 0
            x = _clip(gap, rng)
            if x != gap:  # off the axis: an arrow at the edge with the value
                ax.plot([x], [y], ">" if gap > 0 else "<", color=COLORS[m], ms=8, label=label)
                ax.annotate(
                    f"{gap:+.3g}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(-6 if gap > 0 else 6, 6),
                    ha="right" if gap > 0 else "left",
                    fontsize=7,
                    color=COLORS[m],
                )
                continue
            ax.plot([x], [y], MARKERS[m], color=COLORS[m], mfc=face, ms=7, label=label)
            if m == "proxy" and p.round is not None:
                ax.annotate(f"r{p.round}", (x, y), textcoords="offset points", xytext=(0, 5), fontsize=7)
    ax.set_xlim(*rng)
    ax.axvline(0, color="0.3", lw=1, ls="--")
    ax.set_yticks(
        range(len(names)), [f"{_short(c)}{'  (pick)' if c == pick else ''}" for c in names], fontsize=8
    )
    ax.set_ylim(len(names) - 0.5, -0.5)
    unit = "bits/byte" if board.metric == "answer_bpb" else board.metric
    better = "higher" if board.higher_is_better else "lower"
    ax.set_xlabel(
        f"how much worse than the pick ({unit}; > 0: the pick scores {better}), {level:.0%} paired interval",
        fontsize=8,
    )
    ax.set_title("gap to the proxy's pick per ranking (hollow: tied within noise)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    if methods:
        ax.legend(fontsize=7, loc="best")


def _short(name: str, width: int = 28) -> str:
    """A candidate's name for an axis: a path's last part, cut to ``width`` characters."""
    base = Path(name.rstrip("/")).name or name
    return base if len(base) <= width else base[: width - 1] + "…"


def _cost(ax, board: Leaderboard, names: list[str]) -> None:
    """Unit-seconds per candidate: the proxy (each adaptive round apart) and the baselines."""
    trail = board.adaptive
    left = [0.0] * len(names)
    if trail is not None and trail.rounds:
        for i, rnd in enumerate(trail.rounds):
            widths = [sum(e.wall_s for e in rnd.entries if e.candidate == c) for c in names]
            ax.barh(
                range(len(names)),
                widths,
                left=left,
                color="tab:blue",
                alpha=0.35 + 0.65 * (i + 1) / len(trail.rounds),
                label=f"proxy round {rnd.round}",
            )
            left = [a + b for a, b in zip(left, widths, strict=True)]
    else:
        widths = [r.proxy_wall_s or 0.0 for r in board.rows]
        ax.barh(range(len(names)), widths, color="tab:blue", label="proxy")
        left = widths
    base = [
        sum(x.wall_s for x in board.records if x.candidate == c and x.method in ("zero_shot", "few_shot"))
        for c in names
    ]
    if any(base):
        ax.barh(range(len(names)), base, left=left, color="tab:gray", alpha=0.6, label="baselines")
    ax.set_yticks(range(len(names)), ["" for _ in names])
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("unit wall time, s", fontsize=8)
    ax.set_title("cost per candidate", fontsize=9)
    ax.legend(fontsize=7, loc="best")


def _rounds(ax, board: Leaderboard) -> None:
    """Each candidate's gap to the round's leader, round by round (× where it was dropped)."""
    trail = board.adaptive
    assert trail is not None
    series: dict[str, list[tuple[int, float, float, float, str]]] = {}
    for rnd in trail.rounds:
        for e in rnd.entries:
            if e.score is None:
                continue
            gap = 0.0 if e.status == "leader" else (e.gap or 0.0)
            lo = gap if e.ci_low is None else e.ci_low
            hi = gap if e.ci_high is None else e.ci_high
            series.setdefault(e.candidate, []).append((rnd.round, gap, lo, hi, e.status))
    rng = axis_range([(p[1], p[2], p[3]) for pts in series.values() for p in pts]) or (-1.0, 1.0)
    names = [r.candidate for r in board.rows]
    spread = 0.25 / max(1, len(series))
    for cand, pts in series.items():
        k = names.index(cand) if cand in names else 0
        color = f"C{k % 10}"
        xs = [p[0] + (k - (len(series) - 1) / 2) * spread for p in pts]
        ys = [_clip(p[1], rng) for p in pts]
        ax.plot(xs, ys, "-o", color=color, ms=4, label=_short(cand, 22))
        for x, y, p in zip(xs, ys, pts, strict=True):
            ax.plot([x, x], [_clip(p[2], rng), _clip(p[3], rng)], "-", color=color, alpha=0.5)
            if y != p[1]:
                ax.annotate(f"{p[1]:+.3g}", (x, y), textcoords="offset points", xytext=(4, -4), fontsize=7)
            if p[4] == "dropped":
                ax.plot([x], [y], "x", color="black", ms=9, mew=2)
    ax.axhline(0, color="0.3", lw=1, ls="--")
    ax.set_xticks(
        [r.round for r in trail.rounds],
        [f"round {r.round}\n{r.rows} rows × {r.epochs:g} ep\n{r.dev_rows} dev rows" for r in trail.rounds],
        fontsize=7,
    )
    ax.set_xlim(-0.5, len(trail.rounds) - 0.5)
    ax.set_ylim(rng[1], rng[0])  # the leader (0) on top
    ax.set_ylabel("behind the round's leader (interval)", fontsize=8)
    ax.set_title("adaptive rounds (×: dropped)", fontsize=9)
    ax.legend(fontsize=6, loc="best")
