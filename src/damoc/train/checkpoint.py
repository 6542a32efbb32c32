"""A fine-tune's state on disk, so a killed run continues from its last save instead of step 0.

What is saved: the trainable parameters (the LoRA adapters, or every weight of a full fine-tune), the
optimizer and learning-rate schedule, the row order still to come and the random state, the step and
token counts and the losses so far. Continuing from a save gives the same weights as a run that was
never stopped. A save made for other rows or other settings (its fingerprint differs) is ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from damoc.io.hashing import digest, rows_digest

LOG = logging.getLogger(__name__)


def fingerprint(cfg_dump: dict[str, Any], pairs: Sequence[tuple[str, str]]) -> str:
    """Digest of the settings and the training pairs a save belongs to (damoc's one hashing scheme)."""
    return digest({"settings": cfg_dump, "pairs": rows_digest(list(p) for p in pairs)})


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (a partial file never replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: str | Path, fp: str) -> dict[str, Any] | None:
    """The saved state at ``path`` if it belongs to fingerprint ``fp``; None otherwise (or if unreadable)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or foreign file: start over rather than fail the run
        LOG.warning("ignoring unreadable fine-tune checkpoint %s (%s)", path, exc)
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fp:
        LOG.warning("ignoring fine-tune checkpoint %s: made for other rows or settings", path)
        return None
    return state


def restore_params(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    named = dict(model.named_parameters())
    missing = [n for n in params if n not in named]
    if missing:
        raise ValueError(f"checkpoint names parameters the model lacks: {missing[:3]}")
    with torch.no_grad():
        for n, t in params.items():
            named[n].copy_(t.to(named[n].device))


def remove(path: str | Path | None) -> None:
    if path is not None:
        Path(path).unlink(missing_ok=True)
