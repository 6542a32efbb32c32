"""What the machine runs natively: the device to load on, the weights' dtype, and bf16 autocast.

- ``device``: ``auto`` (the first CUDA device when one is visible, else the CPU), ``cpu``, ``cuda`` or
  ``cuda:N``; a device that does not exist is a one-line error.
- ``dtype``: ``auto`` (float32 on a CPU; on an accelerator the checkpoint's own dtype), ``float32``,
  ``bfloat16`` or ``float16``. Checkpoints are written in the source's dtype unless one is asked for.
- ``precision`` (autocast of the matmuls in scoring and fine-tuning): ``auto`` picks bf16 only where the
  hardware runs it natively (a CUDA device with bf16; a CPU with AVX512-BF16 or AMX), fp32 elsewhere: on
  other CPUs bf16 is emulated and several times slower than fp32.

The CPU's flags come from ``/proc/cpuinfo``; ``DAMOC_CPU_FLAGS`` (space- or comma-separated) replaces
them, e.g. ``DAMOC_CPU_FLAGS=none`` to take the fp32 path on a CPU that has bf16.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import StringConstraints

from damoc.config import StrictModel
from damoc.errors import DamocError

DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"
DeviceName = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=DEVICE_PATTERN)]
DTypeName = Literal["auto", "float32", "bfloat16", "float16"]
Precision = Literal["auto", "fp32", "bf16"]
DTYPES = ("auto", "float32", "bfloat16", "float16")

CPU_FLAGS_ENV = "DAMOC_CPU_FLAGS"
# CPU flags (Linux /proc/cpuinfo names) of native bf16 arithmetic: AVX512-BF16 and AMX-BF16
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


class HardwareSettings(StrictModel):
    """Where a job's models run and in which dtype (mixed into the job configs).

    ```yaml
    device: auto      # auto, cpu, cuda or cuda:N
    dtype: auto       # auto (float32 on a CPU, the checkpoint's own on a GPU), float32, bfloat16, float16
    ```
    """

    # where the models run: auto (the first CUDA GPU when one is visible, else the CPU), cpu, cuda or cuda:N
    device: DeviceName = "auto"
    # the weights' dtype: auto (float32 on a CPU, the checkpoint's own on a GPU), float32, bfloat16 or
    # float16; outputs are written in the source's dtype unless one is given here
    dtype: DTypeName = "auto"


# --- the CPU's native bf16 ---------------------------------------------------------------------------


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags: ``DAMOC_CPU_FLAGS`` when set, else the ``flags`` line of ``cpuinfo``."""
    override = os.environ.get(CPU_FLAGS_ENV)
    if override is not None:
        return frozenset(override.replace(",", " ").lower().split())
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def cpu_bf16_native(flags: frozenset[str] | set[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 among its ``flags``)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_CPU_FLAGS)


def bf16_native(device: str = "cpu", flags: frozenset[str] | set[str] | None = None) -> bool:
    """Whether ``device`` runs bf16 matmuls natively (never by emulation)."""
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            return False
        with torch.cuda.device(device if ":" in device else 0):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if kind == "cpu":
        return cpu_bf16_native(flags)
    return False


def resolve_precision(precision: str, device: str = "cpu", flags: frozenset[str] | None = None) -> str:
    """``fp32`` or ``bf16``: ``auto`` becomes bf16 only where ``device`` runs it natively."""
    if precision == "auto":
        return "bf16" if bf16_native(device, flags) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise DamocError(f"unknown precision '{precision}' (use auto, fp32 or bf16)")
    return precision


# --- devices and dtypes ------------------------------------------------------------------------------


def resolve_device(name: str | None = "auto") -> str:
    """A concrete device (``cpu``, ``cuda`` or ``cuda:N``); a device that does not exist is an error."""
    text = (name or "auto").strip().lower()
    if not re.match(DEVICE_PATTERN, text):
        raise DamocError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)")
    if text == "cpu":
        return "cpu"
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text == "auto":
        return "cuda" if count else "cpu"
    index = int(text.split(":", 1)[1]) if ":" in text else 0
    if count == 0:
        raise DamocError(f"device '{text}' does not exist: no CUDA device is visible")
    if index >= count:
        raise DamocError(
            f"device '{text}' does not exist: {count} CUDA device(s) visible (cuda:0..{count - 1})"
        )
    return text


def torch_dtype(name: str):
    """The torch dtype named ``float32``, ``bfloat16`` or ``float16``."""
    import torch

    if name not in DTYPES or name == "auto":
        raise DamocError(f"unknown dtype '{name}' (use auto, float32, bfloat16 or float16)")
    return getattr(torch, name)


def resolve_dtype(name: str, device: str, source=None):
    """The dtype to load in: an explicit name as is; ``auto`` is float32 on a CPU and the checkpoint's
    own (``source``) on an accelerator (float32 when the source is bf16 and the device lacks it)."""
    import torch

    if name != "auto":
        return torch_dtype(name)
    if device.split(":", 1)[0] == "cpu" or source not in (torch.float32, torch.bfloat16, torch.float16):
        return torch.float32
    if source == torch.bfloat16 and not bf16_native(device):
        return torch.float32
    return source


# --- process-wide defaults for loading (the CLI sets them from --device/--dtype) -----------------------

_LOAD = {"device": "auto", "dtype": "auto"}


def load_defaults() -> dict[str, str]:
    """The device and dtype :func:`damoc.model.arch.load_model` uses when none is passed."""
    return dict(_LOAD)


def set_load_defaults(device: str | None = None, dtype: str | None = None) -> dict[str, str]:
    """Check and set the default device/dtype of every model load in this process (one-line errors)."""
    if device is not None:
        resolve_device(device)
        _LOAD["device"] = device.strip().lower()
    if dtype is not None:
        if dtype not in DTYPES:
            raise DamocError(f"unknown dtype '{dtype}' (use auto, float32, bfloat16 or float16)")
        _LOAD["dtype"] = dtype
    return load_defaults()


@contextlib.contextmanager
def using(device: str | None = None, dtype: str | None = None) -> Iterator[dict[str, str]]:
    """Run a block with these load defaults, then restore the previous ones."""
    before = load_defaults()
    try:
        yield set_load_defaults(device, dtype)
    finally:
        _LOAD.update(before)
