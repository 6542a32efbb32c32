"""Loading causal LMs and finding their decoder layers, for every architecture we handle."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from damoc.errors import DamocError
from damoc.hf import quiet_load
from damoc.hf import text_config as text_config  # re-exported: model code imports it from here
from damoc.zoo import resolve_zoo_model

LOG = logging.getLogger(__name__)

# Where the decoder layers live, tried in order (dotted attribute paths from the CausalLM).
LAYER_PATHS = (
    "model.layers",  # Llama, Qwen2/3, Mistral, Phi3, Gemma/Gemma2/Gemma3 text
    "model.language_model.layers",  # multimodal wrappers (Gemma3ForConditionalGeneration, ...)
    "model.decoder.layers",  # OPT
    "transformer.h",  # GPT-2, GPT-J, Falcon
    "gpt_neox.layers",  # Pythia / GPT-NeoX
)

# Architectures we test (tiny random models in tests/conftest.py) and promise to handle.
TESTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "gemma3_text", "mistral", "phi3")


def _get_attr(obj: object, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_layers_path(model: nn.Module) -> str:
    for path in LAYER_PATHS:
        layers = _get_attr(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return path
    mtype = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise DamocError(
        f"cannot find the decoder layers of a '{mtype}' model (looked at {', '.join(LAYER_PATHS)}); "
        f"supported: {', '.join(TESTED_MODEL_TYPES)}"
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks (a clear error when there is none)."""
    return _get_attr(model, find_layers_path(model))


def is_model_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def resolve_model(name_or_path: str | Path) -> Path:
    """A local HF directory as is, or an offline zoo name fetched into the cache."""
    p = Path(name_or_path)
    if is_model_dir(p):
        return p
    if p.exists():
        raise DamocError(f"{p} is not a model directory (no config.json)")
    return resolve_zoo_model(str(name_or_path))


def load_tokenizer(name_or_path: str | Path):
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    with quiet_load():
        tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> tuple[nn.Module, object]:
    """Load ``(model, tokenizer)`` from a directory or zoo name, in eval mode.

    A compressed-tensors checkpoint (``damoc quantize``'s default output) is dequantized while loading, the
    route transformers documents: damoc's tools work on plain weights.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model(name_or_path)
    extra = {}
    if _is_compressed_tensors(path):
        from transformers import CompressedTensorsConfig

        extra["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    try:
        with quiet_load():
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **extra)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamocError(f"cannot load a causal LM from {path}: {first}") from None
    model.to(device)
    model.eval()
    find_layers_path(model)
    tok = load_tokenizer(path)
    return model, tok


def _is_compressed_tensors(path: Path) -> bool:
    import json

    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (cfg.get("quantization_config") or {}).get("quant_method") == "compressed-tensors"


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
