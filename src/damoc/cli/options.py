"""Options shared by every command that loads a model: ``--device``, ``--dtype`` and ``--offline``."""

from __future__ import annotations

import typer

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.

DEVICE_OPT = typer.Option(
    None,
    "--device",
    help="Where models run: auto (a CUDA GPU when one is visible, else the CPU), cpu, cuda or cuda:N.",
)
DTYPE_OPT = typer.Option(
    None,
    "--dtype",
    help="Weights: auto (float32 on a CPU, the checkpoint's own dtype on a GPU), float32, bfloat16 or "
    "float16. Checkpoints are written in the source's dtype unless one is given.",
)
OFFLINE_OPT = typer.Option(
    False, "--offline", help="Use only local files and the Hugging Face cache (as HF_HUB_OFFLINE=1)."
)


def use_hardware(device: str | None, dtype: str | None, offline: bool = False, job=None) -> None:
    """Apply the flags (over a job's own ``device``/``dtype``) to every model this process loads.

    A device that does not exist or an unknown dtype is a one-line error, raised before anything is
    written.
    """
    from damoc.hardware import set_load_defaults
    from damoc.zoo.registry import set_hub_offline

    if offline:
        set_hub_offline()
    device = device if device is not None else getattr(job, "device", None)
    dtype = dtype if dtype is not None else getattr(job, "dtype", None)
    chosen = set_load_defaults(device, dtype)
    if job is not None and "device" in type(job).model_fields:
        job.device, job.dtype = chosen["device"], chosen["dtype"]
