"""Logging set-up and progress bars (tqdm), quiet under tests and when not a terminal.

A process without a terminal (a ``damoc select`` worker writing to its log) can still report how far
its long loops are: :func:`set_progress_sink` makes every bar started afterwards hand a one-line
status (``desc n/total unit (pct) [elapsed<remaining, rate]``) to a callback, at most once per
interval and only for bars that run longer than that interval.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from tqdm.auto import tqdm

LOG = logging.getLogger("damoc")

_SINK: Callable[[str], None] | None = None
_SINK_EVERY_S = 60.0

# one line per report: the status only, no bar (it goes to logs and status files)
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}]"
LINE_FORMAT_NO_TOTAL = "{desc}: {n_fmt} {unit} [{elapsed}, {rate_fmt}]"


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    LOG.handlers[:] = [handler]
    LOG.setLevel(level)
    LOG.propagate = False
    for noisy in ("transformers", "huggingface_hub", "urllib3", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def set_progress_sink(sink: Callable[[str], None] | None, every_s: float = 60.0) -> None:
    """Send the status of bars that are not shown on a terminal to ``sink`` every ``every_s`` seconds.

    ``None`` (or ``every_s <= 0``) turns it off. A bar shorter than ``every_s`` reports nothing.
    """
    global _SINK, _SINK_EVERY_S
    _SINK = sink if sink is not None and every_s > 0 else None
    _SINK_EVERY_S = float(every_s)


class _LineWriter:
    """A file for tqdm that hands each refreshed status line to the sink."""

    def __init__(self, sink: Callable[[str], None]):
        self.sink = sink

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.sink(line)

    def flush(self) -> None:
        pass


def progress(iterable=None, *, total=None, desc: str = "", unit: str = "it", leave: bool = False):
    """A tqdm bar on a terminal (hidden when DAMOC_NO_PROGRESS=1, under tests); without a terminal it
    reports through the progress sink when one is set, else it is hidden."""
    if sys.stderr.isatty() and os.environ.get("DAMOC_NO_PROGRESS") != "1":
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
    if _SINK is None:
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=True)
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(
        iterable,
        total=total,
        desc=desc or "progress",
        unit=unit,
        leave=False,  # the end of a loop is logged by its caller; no closing line
        file=_LineWriter(_SINK),
        mininterval=_SINK_EVERY_S,
        maxinterval=max(_SINK_EVERY_S, 10.0),
        delay=_SINK_EVERY_S,
        bar_format=LINE_FORMAT if total else LINE_FORMAT_NO_TOTAL,
        ascii=True,
    )
