"""Choosing the cross-calibration weight α on validation text, never on the evaluation text.

Each α of a grid compresses a fresh copy of the model, calibrated on the calibration part of each
source with a validation part held out (``val_size``); the validation perplexities on general and on
domain text then pick α by one rule (:func:`choose_alpha`): the lowest domain perplexity among the α
whose general perplexity is within ``general_tolerance`` of general-only calibration's (α = 0). The
evaluation part (``dev_size``) is not read.

The rule is the trade-off cross-calibration (arXiv 2502.18424) is for: gain domain ability while
keeping general ability.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from pydantic import Field, field_validator

from damoc.config import StrictModel
from damoc.errors import DamocError
from damoc.evaluate.perplexity import pack_sequences, sequence_perplexity
from damoc.model.calibrated.config import PruneCalibratedJob
from damoc.model.calibrated.general_text import load_source_texts
from damoc.model.calibrated.pipeline import compress_model
from damoc.model.calibrated.run import calibration_sequences, mixing_weights

LOG = logging.getLogger(__name__)


class AlphaSearchConfig(StrictModel):
    """The grid, the validation text, the rule."""

    alphas: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    val_size: float = Field(0.2, gt=0.0, lt=1.0)  # of each source's calibration part
    samples: int = Field(16, ge=1)  # validation windows per source
    length: int = Field(256, ge=8)  # tokens per validation window
    general_tolerance: float = Field(0.02, ge=0.0)  # allowed relative rise of general perplexity over α=0's
    batch_size: int = Field(8, ge=1)

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 <= a <= 1.0 for a in v):
            raise ValueError("alphas must be a non-empty list of weights in [0, 1]")
        return sorted(set(v))


@dataclass
class AlphaPoint:
    alpha: float
    general_ppl: float
    domain_ppl: float
    wall_s: float = 0.0


@dataclass
class AlphaChoice:
    alpha: float
    reason: str
    points: list[AlphaPoint] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_alpha(points: Sequence[AlphaPoint], general_tolerance: float) -> AlphaChoice:
    """The α with the lowest validation domain perplexity among those whose general perplexity is at most
    ``(1 + general_tolerance)`` times the reference's: α = 0's when measured, else the lowest general
    perplexity of the grid. Ties go to the smaller α."""
    if not points:
        raise DamocError("no α was measured")
    ref = next((p for p in points if p.alpha == 0.0), None)
    ref_ppl = ref.general_ppl if ref is not None else min(p.general_ppl for p in points)
    limit = ref_ppl * (1.0 + general_tolerance)
    ok = [p for p in points if p.general_ppl <= limit]
    best = min(ok, key=lambda p: (p.domain_ppl, p.alpha))
    where = "α=0's" if ref is not None else "the grid's lowest"
    reason = (
        f"lowest validation domain perplexity ({best.domain_ppl:.2f}) among {len(ok)} of {len(points)} α "
        f"whose general perplexity is within {100 * general_tolerance:g}% of {where} ({ref_ppl:.2f})"
    )
    return AlphaChoice(best.alpha, reason, list(points))


def validation_windows(tok, calibration, cfg: AlphaSearchConfig) -> dict:
    """Token windows of each source's validation part (the same for every α)."""
    out = {}
    for name, src in (("general", calibration.general), ("domain", calibration.domain)):
        if not src:
            raise DamocError(f"choosing α needs a {name} source")
        texts = load_source_texts(src, "val", calibration.dev_size, calibration.seed, cfg.val_size)
        out[name] = pack_sequences(
            tok, texts, cfg.samples, cfg.length, calibration.seed, what=f"validation {name} text '{src}'"
        )
    return out


def search_alpha(
    job,
    cfg: AlphaSearchConfig,
    load: Callable[[], tuple],
    on_point: Callable[[AlphaPoint, object, object], None] | None = None,
) -> AlphaChoice:
    """Compress a fresh model (``load()``) at each α of the grid and choose α on validation perplexity.

    ``job`` is a :class:`~damoc.model.calibrated.config.PruneCalibratedJob` or ``QuantizeJob`` (its
    calibration's ``val_size`` is set to ``cfg.val_size``); ``on_point(point, model, tok)`` sees each
    compressed model (e.g. to evaluate it elsewhere) before it is dropped.
    """
    spec = job.prune if isinstance(job, PruneCalibratedJob) else job.quant
    points = []
    windows = None
    for alpha in cfg.alphas:
        calib_cfg = job.calibration.model_copy(update={"alpha": alpha, "val_size": cfg.val_size})
        model, tok = load()
        if windows is None:
            windows = validation_windows(tok, calib_cfg, cfg)
        t0 = time.perf_counter()
        calib = calibration_sequences(tok, calib_cfg)
        compress_model(model, calib, mixing_weights(calib_cfg), job.method, spec, calib_cfg.batch_size)
        gen = sequence_perplexity(model, windows["general"], cfg.batch_size, desc="val general ppl")
        dom = sequence_perplexity(model, windows["domain"], cfg.batch_size, desc="val domain ppl")
        point = AlphaPoint(alpha, gen.perplexity, dom.perplexity, time.perf_counter() - t0)
        LOG.info(
            "α=%g: validation general ppl %.2f, domain ppl %.2f", alpha, point.general_ppl, point.domain_ppl
        )
        if on_point is not None:
            on_point(point, model, tok)
        points.append(point)
        del model
    return choose_alpha(points, cfg.general_tolerance)


__all__ = [
    "AlphaChoice",
    "AlphaPoint",
    "AlphaSearchConfig",
    "choose_alpha",
    "search_alpha",
    "validation_windows",
]
