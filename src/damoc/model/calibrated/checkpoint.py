"""Saving compressed models: a loadable HF checkpoint plus a JSON record, and for quantized models the
integer codes in a side file.

Quantized checkpoints store the DEQUANTIZED (fake-quantized) weights in the usual safetensors, so
``AutoModelForCausalLM.from_pretrained`` loads them anywhere without kernels; the bit-packed integer
codes, scales, zero points and group indices go to ``damoc_quant.safetensors`` (see
:func:`load_quant_payloads`), from which the weights can be rebuilt exactly. The checkpoint is
therefore not smaller on disk; the side file is what an int kernel or exporter would consume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from damoc.io.files import write_json_atomic
from damoc.model.arch import save_model
from damoc.model.calibrated.methods import QuantPayload
from damoc.model.calibrated.quant import pack_codes, unpack_codes

RECORD_FILE = "damoc_calibrated.json"
QUANT_FILE = "damoc_quant.safetensors"


def save_quant_payloads(path: str | Path, payloads: dict[str, QuantPayload]) -> Path:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, p in payloads.items():
        tensors[f"{name}.qweight"] = pack_codes(p.codes, p.bits).contiguous()
        tensors[f"{name}.scales"] = p.scales.float().contiguous()
        tensors[f"{name}.zeros"] = p.zeros.to(torch.uint8).contiguous()
        tensors[f"{name}.g_idx"] = p.g_idx.to(torch.int32).contiguous()
        meta[name] = {"bits": p.bits, "shape": list(p.codes.shape)}
    save_file(tensors, str(path), metadata={"format": "damoc-quant-v1", "layers": json.dumps(meta)})
    return Path(path)


def load_quant_payloads(path: str | Path) -> dict[str, QuantPayload]:
    """Read ``damoc_quant.safetensors`` back into payloads (``.dequantize()`` rebuilds each weight)."""
    from safetensors import safe_open

    out: dict[str, QuantPayload] = {}
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["layers"])
        for name, m in meta.items():
            codes = unpack_codes(fh.get_tensor(f"{name}.qweight"), m["bits"], tuple(m["shape"]))
            out[name] = QuantPayload(
                codes=codes,
                scales=fh.get_tensor(f"{name}.scales"),
                zeros=fh.get_tensor(f"{name}.zeros").float(),
                g_idx=fh.get_tensor(f"{name}.g_idx"),
                bits=m["bits"],
            )
    return out


def save_checkpoint(
    model, tok, out_dir: str | Path, record: Any, payloads: dict[str, QuantPayload] | None = None
) -> Path:
    """Write the model (safetensors), tokenizer, record JSON and, when given, the quantization side file."""
    from transformers.utils import logging as hf_logging

    out = Path(out_dir)
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        save_model(model, out)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    tok.save_pretrained(str(out))
    if payloads:
        save_quant_payloads(out / QUANT_FILE, payloads)
    write_json_atomic(out / RECORD_FILE, record)
    return out
