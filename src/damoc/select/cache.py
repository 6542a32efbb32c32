"""Ground-truth cache: full fine-tune records keyed by (task data, candidate, fine-tune config, eval).

Full fine-tunes are the expensive part of validation; a record computed once is reused by every
later run with the same key. Records are written atomically, one file per key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from damoc.io.hashing import bytes_digest, digest
from damoc.io.tasks import Example, examples_fingerprint
from damoc.select.config import hash_default
from damoc.select.records import UnitRecord

LOG = logging.getLogger(__name__)

# Ground-truth keys are longer than other digests (damoc.io.hashing): records are shared between runs and
# machines, and the committed ones (benchmarks/records/selection/groundtruth/) are named by 24 digits.
GROUND_TRUTH_KEY_CHARS = 24

# What a ground-truth score depends on. Fields added to these configs later enter the key only when
# set away from their default, so cached ground truth survives additive changes.
FINETUNE_KEY_FIELDS = (
    "method", "epochs", "max_steps", "token_budget", "batch_size", "max_length", "lr", "weight_decay",
    "warmup_ratio", "grad_clip", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "add_eos", "seed",
)  # fmt: skip
EVAL_KEY_FIELDS = ("metric", "max_length", "max_new_tokens", "stop_at_newline", "alias_field")
# scoring settings that enter the key only when set away from their default (older records stay valid)
EVAL_KEY_OPTIONAL = ("precision", "extra_metrics", "options_field", "option_norm", "prompt_format")
# settings that change how fast a fine-tune runs, not what it computes: never in the key
SPEED_ONLY_FIELDS = ("head_positions",)


def stable_fields(cfg, fields: tuple[str, ...]) -> dict[str, Any]:
    """``fields`` of a pydantic config, plus any other field set away from its default (and from its hash
    default: a field whose default became ``auto`` keeps its old default out of the key)."""
    data = cfg.model_dump(mode="json")
    out = {k: data[k] for k in fields if k in data}
    for name, info in type(cfg).model_fields.items():
        if name in fields or name not in data or name in SPEED_ONLY_FIELDS:
            continue
        default = info.get_default(call_default_factory=True)
        if data[name] == hash_default(info):
            continue
        if data[name] != (default.model_dump(mode="json") if hasattr(default, "model_dump") else default):
            out[name] = data[name]
    return out


def candidate_identity(name: str) -> str:
    """A zoo name as is; a model directory by its config and weight files (so a moved copy still hits)."""
    p = Path(name).expanduser()
    if not p.is_dir():
        return f"zoo:{name.strip().lower()}"
    cfg = p / "config.json"
    weights = sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin"))
    chunks = [cfg.read_bytes()] if cfg.is_file() else []
    chunks += [f"{f.name}:{f.stat().st_size}".encode() for f in weights]
    return f"dir:{bytes_digest(chunks)}"


def ground_truth_key(
    train: list[Example],
    dev: list[Example],
    candidate: str,
    finetune,
    eval_cfg,
    train_target: str,
) -> str:
    """Key of a full fine-tune record: training and dev data, candidate, fine-tune and scoring settings."""
    payload = {
        "train": examples_fingerprint(train),
        "dev": examples_fingerprint(dev),
        "candidate": candidate_identity(candidate),
        "finetune": stable_fields(finetune, FINETUNE_KEY_FIELDS),
        "eval": {
            k: v
            for k, v in stable_fields(eval_cfg, EVAL_KEY_FIELDS).items()
            if k in EVAL_KEY_FIELDS or k in EVAL_KEY_OPTIONAL
        },
        "target": train_target,
    }
    return digest(payload, GROUND_TRUTH_KEY_CHARS)


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
