"""Ground-truth cache: full fine-tune records keyed by (task data, candidate, fine-tune config, eval).

Full fine-tunes are the expensive part of validation; a record computed once is reused by every
later run (and later session) with the same key. Records are written atomically, one file per key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from damoc.io.tasks import Example
from damoc.select.records import UnitRecord

LOG = logging.getLogger(__name__)

# Eval fields that do not change a score (only speed) stay out of the key.
_EVAL_SPEED_FIELDS = {"batch_size"}


def examples_fingerprint(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.id, e.question, e.context, e.answer, e.label]).encode())
    return h.hexdigest()[:16]


def candidate_identity(name: str) -> str:
    """A zoo name as is; a model directory by its config and weight files (so a moved copy still hits)."""
    p = Path(name).expanduser()
    if not p.is_dir():
        return f"zoo:{name.strip().lower()}"
    h = hashlib.sha256()
    cfg = p / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"dir:{h.hexdigest()[:16]}"


def ground_truth_key(
    train: list[Example],
    dev: list[Example],
    candidate: str,
    finetune: dict[str, Any],
    eval_cfg: dict[str, Any],
    train_target: str,
) -> str:
    payload = {
        "train": examples_fingerprint(train),
        "dev": examples_fingerprint(dev),
        "candidate": candidate_identity(candidate),
        "finetune": finetune,
        "eval": {k: v for k, v in sorted(eval_cfg.items()) if k not in _EVAL_SPEED_FIELDS},
        "target": train_target,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


class GroundTruthCache:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> UnitRecord | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            rec = UnitRecord.load(p)
        except ValueError:
            LOG.warning("ignoring an unreadable ground-truth record %s", p)
            return None
        return rec if rec.status == "ok" else None

    def put(self, rec: UnitRecord) -> Path | None:
        if rec.status != "ok" or not rec.cache_key or rec.cached:
            return None
        return rec.save(self.path(rec.cache_key))
