"""A worker never outlives the process that started it.

Workers run in their own session (Ctrl-C reaches the parent only, which stops them), so when the parent
is killed outright (SIGKILL, the out-of-memory killer) nothing would stop them: a resumed run would then
start a second worker for the same candidate. The parent passes its pid in ``DAMOC_PARENT_PID``; the worker
asks the kernel for SIGKILL when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``) and, where that is not
available, watches the parent pid from a thread. Either way, a parent already gone when the worker starts
ends the worker at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

LOG = logging.getLogger(__name__)

PARENT_ENV = "DAMOC_PARENT_PID"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, every_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)  # the parent is gone: stop now, records written so far stay


def die_with_parent(parent: int | None = None, every_s: float = 1.0) -> str:
    """Make this process end when ``parent`` (default ``$DAMOC_PARENT_PID``) ends; returns how ("" if no
    parent was named)."""
    if parent is None:
        value = os.environ.get(PARENT_ENV, "")
        if not value.isdigit():
            return ""
        parent = int(value)
    how = "prctl" if _set_pdeathsig(signal.SIGKILL) else "watchdog"
    if os.getppid() != parent:  # it died before the request above took effect
        os._exit(1)
    if how == "watchdog":
        threading.Thread(target=_watch, args=(parent, every_s), daemon=True, name="parent-watchdog").start()
    return how
