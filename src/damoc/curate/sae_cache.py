"""A cache of trained SAEs keyed by (model, layer, pool hash, settings), so a curation is trained once.

Each entry is a directory ``<root>/<key>/`` in damoc's SAE layout (:mod:`damoc.curate.sae_io`) plus
``pool_signatures.safetensors``: the pool rows' mean latent activations (before IDF weighting), so a
re-run with other seeds skips both the SAE training and the pool's forward passes. The key hashes:

- the model: its resolved directory, ``config.json`` and the names, sizes and modification times of its
  weight files (a model changed in place gets a new key);
- the decoder layer, the row texts of the pool (in order), the token limit per row, the number of
  training tokens, and the SAE training settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from damoc.curate.sae import TopKSAE
from damoc.curate.sae_io import LoadedSAE, load_sae, write_sae_files
from damoc.errors import DamocError
from damoc.io.files import atomic_output_dir
from damoc.model.arch import resolve_model

LOG = logging.getLogger(__name__)
SIGNATURES = "pool_signatures.safetensors"


def texts_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:20]


def model_fingerprint(name: str | Path) -> str | None:
    """A content-ish id of a local or zoo model; None when it cannot be resolved without loading it."""
    try:
        path = resolve_model(name).resolve()
    except DamocError:
        return None
    h = hashlib.sha256(str(path).encode())
    h.update((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def cache_key(model_fp: str, layer: int, pool_hash: str, settings: dict[str, Any]) -> str:
    blob = json.dumps(
        {"model": model_fp, "layer": layer, "pool": pool_hash, "settings": settings}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class CachedSAE:
    loaded: LoadedSAE
    signatures: torch.Tensor | None  # (pool rows, width) or None when not stored


class SAECache:
    """Trained SAEs (and their pool signatures) under ``root``; ``root=None`` turns caching off."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root).expanduser() if root else None

    def get(self, key: str) -> CachedSAE | None:
        if self.root is None or not (self.root / key).is_dir():
            return None
        d = self.root / key
        try:
            loaded = load_sae(d)
        except DamocError as exc:  # a damaged entry is retrained, not fatal
            LOG.warning("SAE cache: ignoring %s (%s)", d, exc)
            return None
        sigs = None
        if (d / SIGNATURES).is_file():
            from safetensors.torch import load_file

            sigs = load_file(str(d / SIGNATURES))["signatures"]
        LOG.info("SAE cache: reusing %s", d)
        return CachedSAE(loaded, sigs)

    def put(
        self, key: str, sae: TopKSAE, info: dict[str, Any], signatures: torch.Tensor | None = None
    ) -> Path | None:
        if self.root is None:
            return None
        from safetensors.torch import save_file

        d = self.root / key
        with atomic_output_dir(d, overwrite=True) as tmp:
            write_sae_files(sae, tmp, info)
            if signatures is not None:
                save_file({"signatures": signatures.float().contiguous()}, str(tmp / SIGNATURES))
        return d


__all__ = ["CachedSAE", "SAECache", "cache_key", "model_fingerprint", "texts_hash"]
