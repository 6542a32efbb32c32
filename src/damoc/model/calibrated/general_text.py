"""Calibration and evaluation text sources: the bundled general text, task files and .txt files.

A source is ``general`` (the bundled SQuAD v1.1 dev paragraphs, see resources/general/README.md), a
built-in task name (``pubmedqa``, ``finance``), a task file, or a ``.txt`` file (blank-line separated
paragraphs). Each source is split once into a calibration part and a held-out part (``dev_size``,
``seed``), so that ``damoc eval`` never measures on text the compression was calibrated on. With
``val_size`` > 0 a validation part is taken out of the calibration part as well (a fraction of it): text
that settings such as the cross-calibration weight α are chosen on, calibrated on by no compression and
evaluated on by no report.
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Literal

from damoc.errors import DamocError
from damoc.io.tasks import calibration_texts, load_task

GENERAL = "general"
Part = Literal["calib", "val", "dev", "all"]


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


def _holdout(texts: list[str], part: Part, val_size: float, seed: int) -> list[str]:
    """The validation part (``val``) or the rest (``calib``) of a calibration part."""
    if val_size <= 0:
        if part == "val":
            raise DamocError("no validation part: set val_size > 0")
        return texts
    idx = list(range(len(texts)))
    random.Random(seed + 1).shuffle(idx)
    n_val = max(1, int(round(val_size * len(idx)))) if len(idx) > 1 else 0
    chosen = idx[:n_val] if part == "val" else idx[n_val:]
    return [texts[i] for i in sorted(chosen)]


def load_source_texts(
    source: str, part: Part = "calib", dev_size: float = 0.2, seed: int = 0, val_size: float = 0.0
) -> list[str]:
    """Texts of ``source``: its calibration part, its validation part, its held-out part, or all of it.

    Tasks use the same train/dev split as :func:`damoc.io.tasks.load_task` (train = calibration). The
    validation part is ``val_size`` of the calibration part (the calibration part is the rest).
    """
    src = str(source)
    split = "calib" if part == "val" else part
    if src == GENERAL or Path(src).suffix == ".txt":
        texts = calibration_texts(general_text_path() if src == GENERAL else src)
        texts = _split(texts, split, dev_size, seed)
    elif part == "all":
        return calibration_texts(src)
    else:
        task = load_task(src, dev_size=dev_size, seed=seed)
        texts = [e.text() for e in (task.dev if part == "dev" else task.train)]
        if not any(t.strip() for t in texts):
            raise DamocError(f"{src}: no text to calibrate on")
    return _holdout(texts, part, val_size, seed) if part in ("calib", "val") else texts
