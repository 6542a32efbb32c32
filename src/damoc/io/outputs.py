"""Output paths checked before any work: every command calls these on each path it will write.

A path is refused (one-line :class:`~damoc.errors.DamocError`) when it

- exists and ``overwrite`` was not given (a file, or a directory that is not empty);
- is a directory where a file is written, or a file where a directory is written;
- lies under a regular file (``out.jsonl/x``: no directory can be created there);
- cannot be created: the nearest existing directory above it is not writable for this user
  (``os.access``, which also sees read-only file systems; root passes it except on those).

Outputs are written atomically beside their final place (a temporary sibling renamed over it), so
what must be writable is the directory that will hold the output, or the nearest one that exists.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from damoc.errors import DamocError


def _no_access_is_one_line(check):
    """A directory on the way that this user may not even look into is a one-line error too."""

    @functools.wraps(check)
    def wrapper(path, *args, **kwargs):
        try:
            return check(path, *args, **kwargs)
        except PermissionError as exc:
            raise DamocError(
                f"cannot write {path}: {exc.filename or path} is not accessible (permission denied)"
            ) from None

    return wrapper


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or the closest ancestor that exists (``.`` for a relative path at worst)."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return p
    return Path(".")


@_no_access_is_one_line
def check_creatable(path: str | Path, what: str = "output") -> Path:
    """``path`` can be created (or replaced) by this user: no file above it, a writable directory to hold it."""
    path = Path(path).expanduser()
    holder = _nearest_existing(path.parent) if path.parent != path else path
    if not holder.is_dir():
        raise DamocError(f"cannot write the {what} {path}: {holder} is a file, not a directory")
    if not os.access(holder, os.W_OK | os.X_OK):
        raise DamocError(f"cannot write the {what} {path}: the directory {holder} is not writable")
    return path


@_no_access_is_one_line
def check_output_file(path: str | Path, overwrite: bool = False, what: str = "output") -> Path:
    """A file output: not a directory, not clobbered without ``overwrite``, and creatable."""
    path = Path(path).expanduser()
    if str(path).endswith(os.sep) or path.is_dir():
        raise DamocError(f"the {what} {path} is a directory; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise DamocError(f"the {what} {path} exists (pass --overwrite to replace it)")
    return check_creatable(path, what)


@_no_access_is_one_line
def check_output_dir(path: str | Path, overwrite: bool = False, what: str = "output directory") -> Path:
    """A directory output: not a file, empty unless ``overwrite``, and creatable."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise DamocError(f"the {what} {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise DamocError(f"the {what} {path} is not empty (pass --overwrite to replace it)")
    return check_creatable(path, what)


@_no_access_is_one_line
def check_run_dir(path: str | Path) -> Path:
    """A run directory that may already hold a run (resumed): it must be a directory and writable."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise DamocError(f"the run directory {path} exists and is not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise DamocError(f"the run directory {path} is not writable")
        return check_creatable(path, "run directory")  # its lock file goes beside it
    return check_creatable(path, "run directory")


@_no_access_is_one_line
def check_cache_dir(path: str | Path, what: str = "cache directory") -> Path:
    """A cache directory damoc fills over time: created if missing, so only its place is checked."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise DamocError(f"the {what} {path} exists and is not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise DamocError(f"the {what} {path} is not writable (set DAMOC_CACHE to move it)")
        return path
    return check_creatable(path, what)
