"""Peak memory of one work unit in a worker process: resident set size and, on CUDA, allocated memory.

On Linux the resident-set peak (``VmHWM``) is reset at the start of each unit (``/proc/self/clear_refs``),
so a unit's peak is its own; where that is not possible the value is the process peak so far, which a
worker's first unit shares with nothing and later units share with the earlier ones.

The reset also lowers what the kernel reports as the worker's lifetime peak (``ru_maxrss``, what
``/usr/bin/time`` prints): after a run that is the last unit's peak, not the largest; the records have each.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Start a new peak for this process (RSS and CUDA); False when the RSS peak could not be reset."""
    _cuda_reset()
    try:
        _CLEAR_REFS.write_text("5")  # 5: reset the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Peak resident set size since :func:`reset_peak` (MiB)."""
    try:
        m = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
        if m:
            return int(m.group(1)) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _cuda():
    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


def _cuda_reset() -> None:
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


def peak_gpu_mb() -> float | None:
    """Peak CUDA memory allocated by torch since :func:`reset_peak` (MiB); None without CUDA."""
    cuda = _cuda()
    return cuda.max_memory_allocated() / 2**20 if cuda is not None else None
