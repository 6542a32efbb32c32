"""Atomic writes: a file or directory appears whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from damoc.errors import DamocError
from damoc.io.outputs import check_output_dir as _check


def to_jsonable(obj: Any) -> Any:
    """What ``json.dumps(default=...)`` needs for pydantic models, dataclasses, paths and arrays."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _cannot_write(path: Path, exc: OSError) -> DamocError:
    """One line for a write the output checks did not foresee (the disk filled, a path vanished)."""
    return DamocError(f"cannot write {path}: {exc.strerror or exc}")


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError, PermissionError, IsADirectoryError) as exc:
        raise _cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any, indent: int = 2) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=to_jsonable) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[Any]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False, default=to_jsonable) + "\n" for r in rows)
    return write_text_atomic(path, text)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def check_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse to clobber a non-empty output directory unless asked to, or to write where it cannot."""
    return _check(path, overwrite)


@contextlib.contextmanager
def atomic_output_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it into place only if the block succeeds.

    On any error (or Ctrl-C) the temporary directory is removed, so no half-written output is left.
    """
    final = check_output_dir(path, overwrite)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    except (FileExistsError, NotADirectoryError, PermissionError) as exc:
        raise _cannot_write(final, exc) from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
