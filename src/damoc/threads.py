"""Torch intra-op thread count for a block of work (restored afterwards)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use at most ``n`` torch threads inside the block (None: leave the count alone).

    On a shared or loaded CPU, more threads than free cores make every op wait for descheduled
    workers: a run that asks for ``n`` threads must get no more, in the main process too."""
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, old)))
    try:
        yield
    finally:
        torch.set_num_threads(old)
