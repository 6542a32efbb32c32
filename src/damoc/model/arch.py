"""Loading causal LMs and finding their decoder layers, for every architecture we handle."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from damoc.errors import DamocError

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


def text_config(config):
    """The config that holds ``num_hidden_layers`` (the text sub-config for multimodal models)."""
    if hasattr(config, "get_text_config"):
        return config.get_text_config()
    return config


def is_model_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def resolve_model(name_or_path: str | Path) -> Path:
    """A local HF directory as is, an offline zoo name fetched into the cache, or a hub id (``org/name``)
    downloaded through the hub client (its cache when offline)."""
    p = Path(name_or_path).expanduser()
    if is_model_dir(p):
        return p
    if p.exists():
        raise DamocError(f"{p} is not a model directory (no config.json)")
    from damoc.zoo import resolve_zoo_model  # lazy: the zoo pulls in pip and gguf
    from damoc.zoo.registry import ZOO, is_hub_id

    name = str(name_or_path)
    try:
        return resolve_zoo_model(name)
    except DamocError as exc:
        if is_hub_id(name) and name not in ZOO:  # it may also be a mistyped local path
            raise DamocError(f"{exc} (and no local directory {name} exists)") from None
        raise


@contextlib.contextmanager
def _quiet_load():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)


def load_tokenizer(name_or_path: str | Path):
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    with _quiet_load():
        tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def source_dtype(path: str | Path) -> torch.dtype | None:
    """The dtype a checkpoint's config.json says its weights are in (None when it does not say)."""
    import json

    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sub = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}
    name = cfg.get("dtype") or cfg.get("torch_dtype") or sub.get("dtype") or sub.get("torch_dtype")
    value = getattr(torch, str(name), None) if name else None
    return value if isinstance(value, torch.dtype) else None


def _load_dtype(dtype: torch.dtype | str | None, device: str, source: torch.dtype | None) -> torch.dtype:
    from damoc.hardware import load_defaults, resolve_dtype

    if isinstance(dtype, torch.dtype):
        return dtype
    return resolve_dtype(dtype or load_defaults()["dtype"], device, source)


def load_model(
    name_or_path: str | Path,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, object]:
    """Load ``(model, tokenizer)`` from a directory, zoo name or hub id, in eval mode.

    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and ``dtype`` (``auto``, ``float32``, ``bfloat16``,
    ``float16`` or a torch dtype) default to the process's load defaults (:mod:`damoc.hardware`, set by
    the CLI's ``--device``/``--dtype``): ``auto`` loads float32 on a CPU and the checkpoint's own dtype on
    a GPU. Weights are read without a randomly initialised copy first (what ``low_cpu_mem_usage`` does;
    transformers 5 always loads that way), and on a GPU they go straight to the device (``device_map``),
    never through a full CPU copy. The dtype checkpoints made from this model are saved in (:func:`save_dtype`) is the one asked
    for, or with ``auto`` the source's.
    """
    from transformers import AutoModelForCausalLM

    from damoc.hardware import load_defaults, resolve_device

    target = resolve_device(str(device) if device is not None else load_defaults()["device"])
    path = resolve_model(name_or_path)
    source = source_dtype(path)
    asked = dtype if dtype is not None else load_defaults()["dtype"]
    load_dtype = _load_dtype(dtype, target, source)
    kwargs: dict = {"dtype": load_dtype}
    if target != "cpu":
        kwargs["device_map"] = target
    try:
        with _quiet_load():
            model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamocError(f"cannot load a causal LM from {path}: {first}") from None
    if target == "cpu":
        model.to(target)
    model.eval()
    find_layers_path(model)
    model._damoc_save_dtype = source if asked == "auto" and source is not None else load_dtype
    tok = load_tokenizer(path)
    return model, tok


def save_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a checkpoint of ``model`` is written in: the source's (or the one asked for at load)."""
    saved = getattr(model, "_damoc_save_dtype", None)
    return saved if isinstance(saved, torch.dtype) else next(model.parameters()).dtype


def save_model(model: nn.Module, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """``save_pretrained`` in ``dtype`` (default :func:`save_dtype`), leaving the in-memory model as it is.

    Floating-point tensors are cast on the way out (tensors shared by tied weights stay shared), and
    config.json names the dtype the weights are stored in.
    """
    import json

    out = Path(out)
    target = dtype or save_dtype(model)
    state = model.state_dict()
    if all(not v.is_floating_point() or v.dtype == target for v in state.values()):
        model.save_pretrained(str(out), safe_serialization=True)
        return out
    cast: dict[int, torch.Tensor] = {}
    out_state = {}
    for key, value in state.items():
        if value.is_floating_point() and value.dtype != target:
            ptr = value.data_ptr()
            if ptr not in cast:
                cast[ptr] = value.detach().to(target)
            value = cast[ptr]
        out_state[key] = value
    model.save_pretrained(str(out), state_dict=out_state, safe_serialization=True)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    name = str(target).split(".")[-1]
    cfg["dtype"] = name
    if isinstance(cfg.get("text_config"), dict) and "dtype" in cfg["text_config"]:
        cfg["text_config"]["dtype"] = name
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
