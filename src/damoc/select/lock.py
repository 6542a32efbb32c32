"""One `damoc select` per run directory at a time: a lock file beside the directory.

Two pipelines on the same run directory would delete each other's records (each removes the stale
records of the units it starts), and two workers of one candidate would write the same records and one
interleaved log. The lock is a sibling file ``.<name>.lock`` of the run directory, resolved first (so a
symlink to a locked directory finds the same lock), created atomically with its content (a hard link of
a complete temporary file: never an empty lock), and holding the owner's host and pid and the pids of the
workers it started. It is taken over only when its owner is gone from this host and none of its workers
is still running (a worker outliving its parent could still write records).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from damoc.errors import DamocError

_HELD: dict[str, dict] = {}  # lock path -> its content, for the locks this process holds

# Seconds a new run waits for the workers of a killed one to finish exiting before it refuses to start.
WORKER_EXIT_GRACE_S = 15.0


def lock_path(run: Path) -> Path:
    run = Path(os.path.realpath(Path(run).expanduser()))
    return run.parent / f".{run.name}.lock"


def _stat(pid: int) -> list[str] | None:
    """Fields 3... of /proc/PID/stat (Linux): state first; None where there is no /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the original."""
    stat = _stat(pid)
    return stat[19] if stat else None  # field 22


def _alive(pid: int, started: str | None = None) -> bool:
    """The process runs (a zombie, dead but not yet reaped, does not), and is the one started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    stat = _stat(pid)
    if stat is not None and stat[0] in ("Z", "X"):
        return False
    if started is not None and stat is not None:
        return stat[19] == started
    return True


def process_id(pid: int) -> dict:
    """``{"pid", "started"}``: a pid with its start time, so a later check is not fooled by pid reuse."""
    return {"pid": pid, "started": _start_time(pid)}


def _owner(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_new(path: Path, content: dict) -> bool:
    """Create ``path`` holding ``content``, atomically and only if it does not exist; False if it does."""
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(content, f)
        try:
            os.link(tmp, path)  # fails if path exists; the new lock appears with its content
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then the content
            try:
                fd2 = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd2, "w", encoding="utf-8") as f:
                json.dump(content, f)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _rewrite(path: Path, content: dict) -> None:
    """Replace the content of a lock this process holds (atomically)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(content, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def live_workers(owner: dict) -> list[int]:
    """The worker pids recorded in a lock that are still running."""
    out = []
    for w in owner.get("workers") or []:
        if isinstance(w, dict) and isinstance(w.get("pid"), int) and _alive(w["pid"], w.get("started")):
            out.append(w["pid"])
    return out


def _refuse_if_busy(path: Path, run: Path, me: dict) -> None:
    owner = _owner(path)
    if owner is None:
        raise DamocError(
            f"the lock {path} of run directory {run} cannot be read; remove it if no damoc select uses {run}"
        )
    pid, host = owner.get("pid"), owner.get("host")
    if isinstance(pid, int) and (host != me["host"] or _alive(pid, owner.get("started"))):
        raise DamocError(
            f"run directory {run} is in use by another damoc select (pid {pid} on {host}); "
            f"wait for it, or remove {path} if that run is gone"
        )
    # a worker of a killed run is killed with it, but ending a process that holds gigabytes takes a moment
    deadline = time.monotonic() + WORKER_EXIT_GRACE_S
    while host == me["host"] and live_workers(owner) and time.monotonic() < deadline:
        time.sleep(0.1)
    if host == me["host"] and (workers := live_workers(owner)):
        raise DamocError(
            f"run directory {run}: worker pid {', '.join(map(str, workers))} of an ended damoc select is still "
            "running; wait for it to exit (or stop it) before resuming"
        )


@contextmanager
def run_lock(run: Path) -> Iterator[Path]:
    """Hold the lock of ``run`` for the block; a clear error if another live process (or its worker) holds it."""
    path = lock_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), **process_id(os.getpid()), "workers": []}
    for _ in range(2):
        if _write_new(path, me):
            break
        _refuse_if_busy(path, Path(run), me)
        path.unlink(missing_ok=True)  # stale: its process and workers are gone
    else:
        raise DamocError(f"could not take the lock {path}")
    _HELD[str(path)] = me
    try:
        yield path
    finally:
        _HELD.pop(str(path), None)
        if (_owner(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)


def note_worker(pid: int, running: bool = True) -> None:
    """Record (or, with ``running=False``, drop) a worker pid in every run lock this process holds."""
    for key, content in _HELD.items():
        workers = [w for w in content["workers"] if w.get("pid") != pid]
        if running:
            workers.append(process_id(pid))
        content["workers"] = workers
        with contextlib.suppress(OSError):  # the record of pids is a safeguard, not worth failing the run
            _rewrite(Path(key), content)
