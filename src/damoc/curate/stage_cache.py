"""The FineScope stage cache: every stage's output (curated rows, pruned checkpoint, teacher answers,
scores) kept under a key made of the settings and input file hashes that produced it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from damoc.io.files import atomic_output_dir, read_json, write_json_atomic
from damoc.io.hashing import bytes_digest, digest
from damoc.model.structured.save import save_model_dir

LOG = logging.getLogger(__name__)


def file_hash(path: str | Path) -> str:
    """Content hash of a file, or of the name for a built-in task (no file)."""
    p = Path(path)
    return bytes_digest([p.read_bytes()]) if p.is_file() else f"name:{path}"


class StageCache:
    """Stage outputs under ``root``, each in ``<kind>-<key>`` where the key hashes the settings that made it.

    ``root=None`` disables it (every lookup misses, nothing is written)."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    @staticmethod
    def key(*parts: Any) -> str:
        return digest(parts)

    def dir(self, kind: str, key: str) -> Path | None:
        return None if self.root is None else self.root / f"{kind}-{key}"

    def get(self, kind: str, key: str) -> Any | None:
        d = self.dir(kind, key)
        if d is None or not (d / "value.json").is_file():
            return None
        LOG.info("stage cache: reusing %s", d)
        return read_json(d / "value.json")

    def put(self, kind: str, key: str, value: Any, model=None, tok=None) -> None:
        d = self.dir(kind, key)
        if d is None:
            return
        with atomic_output_dir(d, overwrite=True) as tmp:
            if model is not None:
                save_model_dir(model, tok, tmp)
            write_json_atomic(tmp / "value.json", value)
