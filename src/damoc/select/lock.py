"""One `damoc select` per run directory at a time: a lock file beside the directory.

Two pipelines on the same run directory would delete each other's records (each removes the stale
records of the units it starts). The lock is a sibling file ``.<name>.lock`` (so it survives
``--overwrite`` and does not make the directory non-empty) holding the owner's host and pid; a lock
whose process is gone on this host is stale and taken over.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from damoc.errors import DamocError


def lock_path(run: Path) -> Path:
    return run.parent / f".{run.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextmanager
def run_lock(run: Path) -> Iterator[Path]:
    """Hold the lock of ``run`` for the block; a clear error if another live process holds it."""
    path = lock_path(Path(run).expanduser())
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path) or {}
            pid, host = owner.get("pid"), owner.get("host")
            if isinstance(pid, int) and (host != me["host"] or _alive(pid)):
                raise DamocError(
                    f"run directory {run} is in use by another damoc select (pid {pid} on {host}); "
                    f"wait for it, or remove {path} if that run is gone"
                ) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        break
    else:
        raise DamocError(f"could not take the lock {path}")
    try:
        yield path
    finally:
        if (_owner(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
