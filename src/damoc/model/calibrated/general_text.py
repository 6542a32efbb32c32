"""Calibration and evaluation text sources: the bundled general text, task files and .txt files.

A source is ``general`` (the bundled SQuAD v1.1 dev paragraphs, see resources/general/README.md), a
built-in task name (``pubmedqa``, ``finance``), a task file, or a ``.txt`` file (blank-line separated
paragraphs). Each source is split once into a calibration part and a held-out part (``dev_size``,
``seed``), so that ``damoc eval`` never measures on text the compression was calibrated on.
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Literal

from damoc.errors import DamocError
from damoc.io.tasks import calibration_texts, load_task

GENERAL = "general"
Part = Literal["calib", "dev", "all"]


def general_text_path() -> Path:
    return Path(str(resources.files("damoc") / "resources" / "general" / "squad_v1.1_dev_paragraphs.txt"))


def _split(texts: list[str], part: Part, dev_size: float, seed: int) -> list[str]:
    if part == "all":
        return texts
    idx = list(range(len(texts)))
    random.Random(seed).shuffle(idx)
    n_dev = max(1, int(round(dev_size * len(idx)))) if len(idx) > 1 else 0
    chosen = idx[:n_dev] if part == "dev" else idx[n_dev:]
    return [texts[i] for i in sorted(chosen)]


def load_source_texts(source: str, part: Part = "calib", dev_size: float = 0.2, seed: int = 0) -> list[str]:
    """Texts of ``source``: its calibration part, its held-out part, or all of it.

    Tasks use the same train/dev split as :func:`damoc.io.tasks.load_task` (train = calibration).
    """
    src = str(source)
    if src == GENERAL:
        texts = calibration_texts(general_text_path())
        return _split(texts, part, dev_size, seed)
    if Path(src).suffix == ".txt":
        texts = calibration_texts(src)
        return _split(texts, part, dev_size, seed)
    if part == "all":
        return calibration_texts(src)
    task = load_task(src, dev_size=dev_size, seed=seed)
    rows = task.dev if part == "dev" else task.train
    texts = [e.text() for e in rows]
    if not any(t.strip() for t in texts):
        raise DamocError(f"{src}: no text to calibrate on")
    return texts
