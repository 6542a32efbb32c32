"""The optional model-level stage of ``damoc select``: cross-calibrated pruning or quantization (docs/calibrated.md).

After layer removal, each proxy candidate's linear layers are compressed block by block with Hessians
mixed from general text and the task's own domain text, ``H = (1-α) H_general + α H_domain``. The
domain text is the proxy's calibration subset (the filtered training rows, before token compression),
so no extra file is needed. Settings live in :class:`damoc.select.config.CalibratedSettings`.
"""

from __future__ import annotations

import logging
from typing import Any

from damoc.errors import DamocError
from damoc.evaluate.perplexity import pack_sequences
from damoc.model.calibrated.general_text import load_source_texts
from damoc.model.calibrated.hessian import source_weights
from damoc.model.calibrated.methods import METHODS, method_family
from damoc.model.calibrated.pipeline import compress_model
from damoc.select.config import CalibratedSettings

LOG = logging.getLogger(__name__)


def stage_spec(settings: CalibratedSettings):
    """The prune or quantize spec of the configured method (a one-line error for an unknown method)."""
    METHODS.entry(settings.method)
    return settings.quant if method_family(settings.method) == "quantize" else settings.prune


def check_settings(settings: CalibratedSettings) -> None:
    """Everything checkable before a run starts: the method, and that the general text exists."""
    stage_spec(settings)
    if settings.general and settings.alpha < 1.0:
        if not load_source_texts(settings.general, "calib"):
            raise DamocError(f"general calibration text '{settings.general}' is empty")


def calibration_windows(tok, settings: CalibratedSettings, domain_texts: list[str]) -> dict:
    """Token windows of each source with a positive weight: {'general': (n, L), 'domain': (n, L)}."""
    out = {}
    if settings.general and settings.alpha < 1.0:
        texts = load_source_texts(settings.general, "calib")
        out["general"] = pack_sequences(
            tok, texts, settings.samples, settings.length, what=f"general text '{settings.general}'"
        )
    if settings.alpha > 0.0:
        out["domain"] = pack_sequences(
            tok, domain_texts, settings.samples, settings.length, what="the task's domain text"
        )
    return out


def apply_calibrated(model, tok, settings: CalibratedSettings, domain_texts: list[str]) -> dict[str, Any]:
    """Compress ``model`` in place; returns a JSON-able summary (method, weights, tokens, sparsity, error)."""
    spec = stage_spec(settings)
    needs_data = getattr(METHODS.get(settings.method), "needs_calibration", True)
    calib = calibration_windows(tok, settings, domain_texts) if needs_data else {}
    weights = source_weights(settings.alpha, "general" in calib, "domain" in calib) if calib else {}
    result = compress_model(model, calib, weights, settings.method, spec, settings.batch_size)
    errs = [s.rel_error for s in result.layers if s.rel_error is not None]
    summary: dict[str, Any] = {
        "method": settings.method,
        "family": method_family(settings.method),
        "weights": dict(result.weights),
        "tokens": dict(result.tokens),
        "layers": len(result.layers),
        "sparsity": result.sparsity,
        "mean_rel_error": sum(errs) / len(errs) if errs else None,
        "wall_s": result.wall_s,
    }
    if summary["family"] == "quantize":
        summary["bits"] = settings.quant.bits
        summary["group_size"] = settings.quant.group_size
    LOG.info(
        "calibrated %s: %d layers, sparsity %.3f, weights %s",
        settings.method,
        len(result.layers),
        result.sparsity,
        summary["weights"],
    )
    return summary
