"""Logging set-up and progress bars (tqdm), quiet under tests and when not a terminal."""

from __future__ import annotations

import logging
import os
import sys

from tqdm.auto import tqdm

LOG = logging.getLogger("damoc")


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    LOG.handlers[:] = [handler]
    LOG.setLevel(level)
    LOG.propagate = False
    for noisy in ("transformers", "huggingface_hub", "urllib3", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def progress(iterable=None, *, total=None, desc: str = "", unit: str = "it", leave: bool = False):
    """A tqdm bar that hides itself when DAMOC_NO_PROGRESS=1 (tests) or stderr is not a terminal."""
    disable = os.environ.get("DAMOC_NO_PROGRESS") == "1" or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable, dynamic_ncols=True)
