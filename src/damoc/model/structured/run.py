"""`damoc prune structured`: load, score on calibration data, prune, save (the plumbing around prune.py)."""

from __future__ import annotations

from pathlib import Path

from damoc.errors import DamocError
from damoc.io.files import check_output_dir
from damoc.io.tasks import calibration_texts
from damoc.model.arch import load_model
from damoc.model.structured.config import StructuredPruneConfig
from damoc.model.structured.importance import IMPORTANCE
from damoc.model.structured.prune import PruneReport, structured_prune
from damoc.model.structured.save import save_pruned


def prune_to_dir(
    model_name: str | Path,
    data: str | Path | None,
    out: str | Path,
    cfg: StructuredPruneConfig,
    overwrite: bool = False,
) -> PruneReport:
    """Prune ``model_name`` to ``cfg.ratio`` fewer parameters using ``data`` for importance; write ``out``."""
    check_output_dir(out, overwrite)
    method = IMPORTANCE.entry(cfg.importance)
    texts: list[str] = []
    if method.obj.needs_grad:
        if data is None:
            raise DamocError(f"importance '{method.name}' needs calibration data (pass --data)")
        texts = calibration_texts(data, limit=cfg.samples)
    model, tok = load_model(model_name)
    report = structured_prune(model, tok, texts, cfg)
    save_pruned(model, tok, report, out, overwrite)
    return report
