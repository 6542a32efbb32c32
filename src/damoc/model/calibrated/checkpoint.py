"""Saving compressed models: a checkpoint standard tools load, plus a JSON record of the job.

- Quantized, ``compressed-tensors`` format (the default): the integer weights packed in the
  ``pack-quantized`` format with ``quantization_config`` in ``config.json`` (see :mod:`.export`); vLLM
  serves it with its weight-only int kernels, transformers loads it (with compressed-tensors installed).
- ``dense``: plain weights (pruned weights as exact zeros, quantized ones dequantized) that any loader reads.

Both keep the dtype of the source checkpoint unless another was asked for (``--dtype``). The record (``damoc_calibrated.json``) is the only other file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from damoc.io.files import write_json_atomic
from damoc.model.calibrated.config import QuantSpec
from damoc.model.calibrated.export import COMPRESSED, save_compressed, save_dense
from damoc.model.calibrated.methods import QuantPayload

RECORD_FILE = "damoc_calibrated.json"


def save_checkpoint(
    model,
    tok,
    out_dir: str | Path,
    record: Any,
    payloads: dict[str, QuantPayload] | None = None,
    spec: QuantSpec | None = None,
    fmt: str = COMPRESSED,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write the model in ``dtype`` (packed when ``payloads`` and ``fmt`` is compressed-tensors), the
    tokenizer and the record. The compressed-tensors format changes the model in place (cast; quantized
    layers packed); the dense one leaves it as it is."""
    out = Path(out_dir)
    if payloads and fmt == COMPRESSED:
        if spec is None:
            raise ValueError("the compressed-tensors format needs the QuantSpec the payloads were made with")
        save_compressed(model, out, payloads, spec, dtype)
    else:
        save_dense(model, out, dtype)
    tok.save_pretrained(str(out))
    write_json_atomic(out / RECORD_FILE, record)
    return out
