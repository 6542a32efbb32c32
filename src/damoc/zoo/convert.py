"""GGUF → safetensors HF directory: load with transformers (which dequantizes), clean up, save."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from damoc.errors import DamocError
from damoc.hf import quiet_load, text_config

LOG = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Conversion:
    """What the conversion produced."""

    model_type: str
    layers: int
    params: int
    tied_embeddings: bool
    dtype: str
    seconds: float


def drop_quantization(model: nn.Module) -> None:
    """Forget the GGUF quantizer the load leaves behind: the weights are plain dequantized tensors now."""
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    if getattr(model, "is_quantized", False):
        model.is_quantized = False


def retie_embeddings(model: nn.Module) -> bool:
    """Share the input embedding with the output head where the config ties them; returns whether tied."""
    if not getattr(text_config(model.config), "tie_word_embeddings", False):
        return False
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or inp is None:
        return False
    if out.weight is not inp.weight:
        if out.weight.shape != inp.weight.shape:
            raise DamocError(
                f"cannot tie embeddings: head {tuple(out.weight.shape)} vs {tuple(inp.weight.shape)}"
            )
        out.weight = inp.weight
    return True


def count_params(model: nn.Module) -> int:
    """Distinct parameters (a tied head counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def convert_gguf(
    gguf_dir: str | Path, gguf_file: str, out_dir: str | Path, dtype: str = "float32"
) -> Conversion:
    """Load ``gguf_dir/gguf_file`` (dequantized), and save model + tokenizer as safetensors into ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise DamocError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPES)})")
    start = time.perf_counter()
    LOG.info("dequantizing %s", gguf_file)
    try:
        with quiet_load():
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_dir), gguf_file=gguf_file, dtype=torch.float32
            )
            tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamocError(f"cannot load GGUF {gguf_file}: {first}") from None
    drop_quantization(model)
    tied = retie_embeddings(model)
    model.to(DTYPES[dtype])
    model.eval()
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    return Conversion(
        model_type=text_config(model.config).model_type,
        layers=text_config(model.config).num_hidden_layers,
        params=count_params(model),
        tied_embeddings=tied,
        dtype=dtype,
        seconds=round(time.perf_counter() - start, 2),
    )
