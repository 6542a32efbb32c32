"""A run's leaderboard: computed from its records (``compute``), rendered as text (``render``) and as a
plot (``plot``), and written as ``leaderboard.json``, ``report.md`` and ``leaderboard.png``."""

from __future__ import annotations

from pathlib import Path

from damoc.io.files import write_json_atomic, write_text_atomic
from damoc.select.records import Leaderboard
from damoc.select.report.compute import best_full, build_leaderboard, compute_cost, stage_totals
from damoc.select.report.plot import plot_leaderboard
from damoc.select.report.render import (
    _cost_breakdown,
    _peak_rows,
    compress_rate_text,
    compression_note,
    disagreement,
    failure_hint,
    projection_line,
    render_markdown,
    render_table,
    table_rows,
)


def write_reports(board: Leaderboard, run: str | Path) -> None:
    run = Path(run)
    write_json_atomic(run / "leaderboard.json", board.model_dump(mode="json"))
    write_text_atomic(run / "report.md", render_markdown(board))
    plot_leaderboard(board, run / "leaderboard.png")


__all__ = [
    "_cost_breakdown",
    "_peak_rows",
    "best_full",
    "build_leaderboard",
    "compress_rate_text",
    "compression_note",
    "compute_cost",
    "disagreement",
    "failure_hint",
    "plot_leaderboard",
    "projection_line",
    "render_markdown",
    "render_table",
    "stage_totals",
    "table_rows",
    "write_reports",
]
