"""Loading causal LMs and finding their decoder layers, for every architecture we handle."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from damoc.errors import DamocError
from damoc.hardware import load_defaults, resolve_device, resolve_dtype
from damoc.hf import quiet_load
from damoc.hf import text_config as text_config  # re-exported: model code imports it from here
from damoc.zoo import resolve_zoo_model
from damoc.zoo.registry import ZOO, hub_offline, hub_snapshot, is_hub_id

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
    """A local HF directory as is, an offline zoo name fetched into the cache, or a hub id (``org/name``)
    downloaded through the hub client (its cache when offline)."""
    p = Path(name_or_path).expanduser()
    if is_model_dir(p):
        return p
    if p.exists():
        raise DamocError(f"{p} is not a model directory (no config.json)")

    name = str(name_or_path)
    try:
        return resolve_zoo_model(name)
    except DamocError as exc:
        if is_hub_id(name) and name not in ZOO:  # it may also be a mistyped local path
            raise DamocError(f"{exc} (and no local directory {name} exists)") from None
        raise


class ModelLoadError(DamocError):
    """A model directory that does not load: one line for the terminal; ``detail`` keeps the library's
    own load report and the traceback, for logs and failure records."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.contextmanager
def _captured_load_report() -> Iterator[io.StringIO]:
    """What transformers logs while loading (its load report of missing or mismatched weights), kept in a
    buffer instead of printed; warnings and the loading bar are silenced."""
    from transformers.utils import logging as hf_logging

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    lib = hf_logging.get_logger("transformers")
    level = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_default_handler()
    hf_logging.disable_progress_bar()  # a bar on stderr would precede the one-line error
    lib.addHandler(handler)
    hf_logging.set_verbosity_warning()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield buf
    finally:
        lib.removeHandler(handler)
        hf_logging.enable_default_handler()
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _shape_mismatch(path: Path, files: list[Path]) -> str | None:
    """The first weight whose shape in the checkpoint differs from the one config.json implies."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):
            shapes = {
                k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()
            }
    except Exception:  # a config that does not even build a model: the original error says more
        return None
    bad = []
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():
                want = shapes.get(key)
                got = tuple(fh.get_slice(key).get_shape())
                if want is not None and want != got:
                    bad.append((key, got, want, f.name))
    if not bad:
        return None
    key, got, want, fname = bad[0]
    more = f" ({len(bad)} weights differ)" if len(bad) > 1 else ""
    return f"{key} is {list(got)} in {fname} but config.json implies {list(want)}{more}"


def model_files_problem(path: Path) -> str | None:
    """Why the model directory ``path`` would not load, read from its files without loading the weights:
    a config that does not parse, no weights, a weights file that is not safetensors (truncated, corrupt),
    a shard its index names but that is missing, or a weight whose shape the config does not imply."""
    import json

    from safetensors import safe_open
    from transformers import AutoConfig

    try:
        with quiet_load():
            AutoConfig.from_pretrained(str(path))
    except Exception as exc:
        return _first_line(exc)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            return f"{index.name} is not a valid shard index ({_first_line(exc)})"
        absent = [s for s in shards if not (path / s).is_file()]
        if absent:
            return f"{index.name} names {absent[0]}, which is missing"
    files = sorted(path.glob("*.safetensors"))
    if not files and not any(path.glob("pytorch_model*.bin")):
        return "no weights file (model.safetensors or pytorch_model.bin)"
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                list(fh.keys())
        except Exception as bad:  # safetensors raises its own error type
            return f"{f.name} is not a readable safetensors file, truncated or corrupt ({_first_line(bad)})"
    try:
        return _shape_mismatch(path, files)
    except Exception:  # the check is a diagnosis; loading will say what it finds
        return None


def diagnose_load_failure(path: Path, exc: BaseException) -> str:
    """One line on why ``path`` did not load: what its files show, else the library's own first line."""
    return model_files_problem(path) or _first_line(exc)


def check_model(name_or_path: str | Path, what: str = "model") -> None:
    """Before any work: ``name_or_path`` is a model directory that will load (its files checked, the weights
    not read), a zoo model, a Hugging Face id in the local cache, or (hub on) a hub id, downloaded when it
    is loaded; a one-line error otherwise. Nothing is fetched here."""
    p = Path(name_or_path).expanduser()
    if is_model_dir(p):
        problem = model_files_problem(p)
        if problem:
            raise ModelLoadError(f"cannot load a causal LM from {p}: {problem}")
        return
    if p.exists():
        raise DamocError(f"{what} {p} is not a model directory (no config.json)")
    name = str(name_or_path)
    if name in ZOO or hub_snapshot(name) is not None:
        return
    if is_hub_id(name):
        if not hub_offline():
            return
        raise DamocError(
            f"unknown {what} '{name}': no local directory {name}, not in the local Hugging Face cache, and "
            "the hub is off (HF_HUB_OFFLINE / --offline)"
        )
    raise DamocError(
        f"{what} '{name}' is not a model directory, a zoo model ({', '.join(ZOO.names())}) nor a hub id"
    )


def load_error(path: Path, exc: BaseException, report: str = "", what: str = "a causal LM") -> ModelLoadError:
    detail = _ANSI.sub("", report).strip()
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).strip()
    return ModelLoadError(
        f"cannot load {what} from {path}: {diagnose_load_failure(path, exc)}",
        "\n\n".join(x for x in (detail, trace) if x),
    )


def _from_pretrained(path: Path, **kwargs):
    """``AutoModelForCausalLM.from_pretrained`` with every failure (and weights missing from the checkpoint,
    which transformers would initialise at random) turned into a one-line :class:`ModelLoadError`."""
    from transformers import AutoModelForCausalLM

    report = io.StringIO()
    try:
        with _captured_load_report() as report:
            model, info = AutoModelForCausalLM.from_pretrained(str(path), output_loading_info=True, **kwargs)
    except DamocError:
        raise
    except Exception as exc:
        raise load_error(path, exc, report.getvalue()) from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ModelLoadError(
            f"cannot load a causal LM from {path}: the checkpoint lacks {missing[0]}{more} "
            "(saved from another architecture, or incomplete)",
            _ANSI.sub("", report.getvalue()).strip(),
        )
    return model


def load_tokenizer(name_or_path: str | Path):
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        with quiet_load():
            tok = AutoTokenizer.from_pretrained(str(path))
    except DamocError:
        raise
    except Exception as exc:
        raise load_error(path, exc, what="a tokenizer") from None
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
    never through a full CPU copy. The dtype checkpoints made from this model are saved in
    (:func:`save_dtype`) is the one asked for, or with ``auto`` the source's.

    A compressed-tensors checkpoint (``damoc quantize``'s default output) is dequantized while loading, the
    route transformers documents: damoc's tools work on plain weights.
    """
    target = resolve_device(str(device) if device is not None else load_defaults()["device"])
    path = resolve_model(name_or_path)
    source = source_dtype(path)
    asked = dtype if dtype is not None else load_defaults()["dtype"]
    load_dtype = _load_dtype(dtype, target, source)
    kwargs: dict = {"dtype": load_dtype}
    if target != "cpu":
        kwargs["device_map"] = target
    if _is_compressed_tensors(path):
        from transformers import CompressedTensorsConfig

        kwargs["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model = _from_pretrained(path, **kwargs)
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
