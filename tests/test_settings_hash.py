"""Settings hashes (resume) ignore defaulted fields, and a changed default is caught.

``damoc select --resume`` reuses a unit's record only while its settings hash matches. The hash leaves
fields at their default out, so upgrading damoc (new fields with defaults) keeps a half-done run
resumable; a changed default must bump ``SETTINGS_EPOCH``. The committed snapshot
``tests/data/settings_defaults.json`` holds the defaults of the current epoch; regenerate it with
``python tests/test_settings_hash.py --write`` after bumping the epoch.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path

from pydantic import BaseModel

from damoc.config import StrictModel
from damoc.select.config import _NONE, SETTINGS_EPOCH, DataSettings, config_hash, hash_default
from damoc.select.worker import UnitSpec

SNAPSHOT = Path(__file__).parent / "data" / "settings_defaults.json"


def _models(tp, seen: dict[str, type[BaseModel]]) -> None:
    """Every pydantic model class reachable from the annotation ``tp``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        name = f"{tp.__module__}.{tp.__qualname__}"
        if name in seen:
            return
        seen[name] = tp
        for f in tp.model_fields.values():
            _models(f.annotation, seen)
        return
    for arg in typing.get_args(tp):
        _models(arg, seen)


def current_defaults() -> dict[str, dict[str, object]]:
    """The value every field of the settings that enter a settings hash leaves out of it (required fields
    left out): its default, or its hash default where it declares one (a field whose default became
    ``auto`` keeps its old default out of the hash, so that value stands for it here)."""
    seen: dict[str, type[BaseModel]] = {}
    _models(UnitSpec, seen)
    _models(DataSettings, seen)
    out = {}
    for name, cls in sorted(seen.items()):
        fields = {}
        for fname, info in cls.model_fields.items():
            if info.is_required():
                continue
            default = hash_default(info)
            if default is _NONE:
                default = info.get_default(call_default_factory=True)
            fields[fname] = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
        out[name] = json.loads(json.dumps(fields, default=str))
    return out


def test_defaults_unchanged_within_an_epoch():
    snap = json.loads(SNAPSHOT.read_text())
    if snap["epoch"] != SETTINGS_EPOCH:
        raise AssertionError(
            f"SETTINGS_EPOCH is {SETTINGS_EPOCH} but the snapshot is of epoch {snap['epoch']}: "
            "regenerate it with `python tests/test_settings_hash.py --write`"
        )
    now = current_defaults()
    changed = [
        f"{cls}.{field}: {old!r} -> {now[cls][field]!r}"
        for cls, fields in snap["defaults"].items()
        for field, old in fields.items()
        if cls in now and field in now[cls] and now[cls][field] != old
    ]
    assert not changed, (
        "a default changed; bump SETTINGS_EPOCH in damoc/select/config.py (so resumed runs redo work made "
        "under the old default) and regenerate the snapshot: " + "; ".join(changed)
    )


class _Old(StrictModel):
    lr: float = 1e-4
    epochs: float = 1.0


class _New(StrictModel):  # the same settings one release later: a field added with a default
    lr: float = 1e-4
    epochs: float = 1.0
    warmup: float = 0.0


def test_added_defaulted_field_keeps_the_hash():
    assert config_hash({"a": _Old(lr=3e-4)}) == config_hash({"a": _New(lr=3e-4)})
    assert config_hash({"a": _Old()}) == config_hash({"a": _New(warmup=0.0)})


def test_hash_follows_every_set_value():
    base = config_hash({"a": _New(lr=3e-4)})
    assert config_hash({"a": _New(lr=3e-4, warmup=0.1)}) != base
    assert config_hash({"a": _New(lr=5e-4)}) != base
    assert config_hash({"a": _New(lr=3e-4), "data": "x"}) != base


def test_nested_defaults_left_out():
    plain = config_hash({"data": DataSettings()})
    assert plain == config_hash({"data": DataSettings(budget=0.1)})  # the default, spelled out
    assert plain != config_hash({"data": DataSettings(budget=12)})
    assert plain != config_hash({"data": DataSettings(filter_options={"k": 1})})


def test_ground_truth_key_ignores_speed_only_settings():
    from damoc.io.tasks import Example
    from damoc.select.cache import ground_truth_key
    from damoc.select.config import SelectEval
    from damoc.train.finetune import FinetuneConfig

    rows = [Example(id="1", question="q", answer="a")]

    def key(**ft):
        return ground_truth_key(
            rows, rows, "smollm2-135m", FinetuneConfig(method="full", **ft), SelectEval(), "answer"
        )

    assert key(head_positions="all") == key() == key(head_positions="answer")  # same math, other speed
    assert key(lr=1e-5) != key()


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    SNAPSHOT.write_text(
        json.dumps({"epoch": SETTINGS_EPOCH, "defaults": current_defaults()}, indent=1) + "\n"
    )
    print(f"wrote {SNAPSHOT}")
