"""damoc from Python: the commands' work on model names, directories or models in memory, with typed results.

>>> import damoc
>>> board = damoc.select("examples/select_demo.yaml")            # a Leaderboard
>>> pruned = damoc.prune_layers("smollm2-135m", "pubmedqa", fraction=0.25, out="runs/pruned")
>>> sub = damoc.filter("pubmedqa", method="kcenter", budget=0.1)   # a Filtered: rows + selection
>>> short = damoc.compress(sub.examples, rate=0.5)                 # a CompressResult
>>> sparse = damoc.prune_calibrated("smollm2-135m", domain="pubmedqa", sparsity=0.5)
>>> q4 = damoc.quantize(sparse.model, tokenizer=sparse.tokenizer, domain="pubmedqa", bits=4)

A model is a zoo name, a local Hugging Face directory, a hub id (``org/name``) or an in-memory causal LM
(pass its ``tokenizer=`` too); it is loaded on ``device`` in ``dtype`` (both ``auto`` by default:
a GPU when one is visible; float32 on a CPU, the checkpoint's own dtype on a GPU). Functions that change
a model change the loaded copy (an in-memory model in place) and return it; with ``out=`` they also
write a checkpoint (in the source's dtype unless ``dtype`` asks for another). Every option of the
matching config (``LayerPruneConfig``, ``CompressConfig``, ``CalibrationConfig``, ...) is a keyword;
a bad value is a one-line :class:`~damoc.errors.DamocError`.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.config import check_key_envs, parse_config, read_yaml
from damoc.errors import DamocError
from damoc.hardware import resolve_device, using
from damoc.io.files import atomic_output_dir, check_output_dir, write_jsonl_atomic
from damoc.io.tasks import Example, FieldMap, calibration_texts, load_examples

# Each function imports the stage it runs when it is called, so that `damoc.filter(...)` loads neither
# the selection pipeline (Ray) nor a model library it does not use.

ModelLike = Any  # a name, a directory, a hub id or an nn.Module
TaskLike = Any  # a task name/file/directory/hub dataset, or a list of Example


@dataclass
class CompressedModel:
    """A model changed by :func:`prune_layers`, :func:`prune_calibrated` or :func:`quantize`."""

    model: Any
    tokenizer: Any
    report: Any  # LayerPruneReport, or the calibrated CompressionRecord
    path: Path | None = None  # the checkpoint written with ``out=``


@dataclass
class Filtered:
    """The rows :func:`filter` kept, in the method's priority order, and the method's selection."""

    examples: list[Example]
    selection: Any  # damoc.data.filters.Selection (indices into the pool, scores, info)
    pool: list[Example] = field(default_factory=list)


def _examples(task: TaskLike, fields: FieldMap | dict | None = None) -> list[Example]:
    if isinstance(task, list | tuple):
        if not all(isinstance(e, Example) for e in task):
            raise DamocError("pass a task name/file or a list of damoc.io.tasks.Example")
        return list(task)
    fmap = FieldMap(**fields) if isinstance(fields, dict) else fields
    return load_examples(task, fmap)


def _texts(data: TaskLike) -> list[str]:
    if isinstance(data, list | tuple):
        return [e.text() if isinstance(e, Example) else str(e) for e in data]
    return calibration_texts(data)


def _load(model: ModelLike, tokenizer, device: str | None, dtype: str | None):
    """``(model, tokenizer, name)``: a name is loaded; a model in memory is used as it is."""
    if isinstance(model, str | Path):
        from damoc.model.arch import load_model

        with using(device, dtype):
            mdl, tok = load_model(model)
        return mdl, tokenizer or tok, str(model)
    if tokenizer is None:
        raise DamocError("a model in memory needs its tokenizer: pass tokenizer=")
    return model, tokenizer, getattr(getattr(model, "config", None), "_name_or_path", "") or "model"


def _options(cls, where: str, **values):
    return parse_config(cls, {k: v for k, v in values.items() if v is not None}, where=where)


def select(job: Any, *, resume: bool = False, overwrite: bool = False, **overrides: Any):
    """Rank candidates as ``damoc select`` does; returns the run's ``Leaderboard``.

    ``job`` is a YAML path, a dict or a ``SelectConfig``; ``overrides`` replace top-level sections (e.g.
    ``candidates=[...]``, ``run={"run_dir": ...}``). A candidate may be a ``(model, tokenizer)`` pair in
    memory: it is saved beside the run directory first (``<run_dir>.inputs/``; each candidate runs in
    its own process). As with ``damoc select``, a YAML file's ``api_key_env`` must be ``OPENAI_API_KEY`` or
    a name listed in ``DAMOC_API_KEY_ENVS``; a dict or ``SelectConfig`` built in code is the caller's choice.
    """
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import run_select

    if isinstance(job, SelectConfig):
        data = job.model_dump(mode="json", by_alias=True)  # not dump(): that masks credentials in URLs
    elif isinstance(job, dict):
        data = dict(job)
    else:
        data = read_yaml(job)
        check_key_envs(data, str(job))  # a job file (maybe shared) names its key as the CLI allows it
    data.setdefault("job", "select")
    for key, value in overrides.items():
        base = data.get(key)
        data[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    run_dir = Path((data.get("run") or {}).get("run_dir", "runs/select")).expanduser()
    cands = []
    for i, cand in enumerate(data.get("candidates") or []):
        if isinstance(cand, tuple | list) and len(cand) == 2:
            from damoc.model.arch import save_model

            path = run_dir.with_name(run_dir.name + ".inputs") / f"candidate-{i}"
            path.mkdir(parents=True, exist_ok=True)
            save_model(cand[0], path)
            cand[1].save_pretrained(str(path))
            cand = str(path)
        cands.append(str(cand))
    data["candidates"] = cands
    cfg = parse_config(SelectConfig, data, where="select")
    return run_select(cfg, resume=resume, overwrite=overwrite)


def prune_layers(
    model: ModelLike,
    data: TaskLike,
    *,
    tokenizer=None,
    out: str | Path | None = None,
    overwrite: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    **options: Any,
) -> CompressedModel:
    """Remove layers (``fraction=``, ``remove=`` or ``layers=``) and merge them into the kept ones
    (``merge=``: linear, none, magnitude, dare), calibrated on ``data``; see ``LayerPruneConfig``."""
    from damoc.model.layer_pruning import LayerPruneConfig, save_pruned
    from damoc.model.layer_pruning import prune_layers as _prune

    cfg = _options(LayerPruneConfig, "prune_layers", **options)
    if cfg.remove is None and cfg.fraction is None and cfg.layers is None:
        raise DamocError("say how many layers to remove: fraction=, remove= or layers=")
    if out is not None:
        check_output_dir(out, overwrite)
    texts = _texts(data)
    mdl, tok, name = _load(model, tokenizer, device, dtype)
    report = _prune(mdl, tok, texts, cfg)
    report.source = name
    path = save_pruned(mdl, tok, out, report, overwrite=overwrite) if out is not None else None
    return CompressedModel(mdl, tok, report, path)


def filter(  # noqa: A001 - the command's name
    task: TaskLike,
    *,
    method: str = "random",
    budget: int | float = 0.1,
    seed: int = 0,
    fields: FieldMap | dict | None = None,
    **options: Any,
) -> Filtered:
    """Keep ``budget`` rows (a fraction < 1 or a count) of ``task`` with a data filter (``damoc filter
    --list``); ``options`` are the filter's own options and its context (``embedder=``, ...)."""
    from damoc.data.filters import run_filter

    pool = _examples(task, fields)
    sel = run_filter(method, pool, budget, seed=seed, **options)
    return Filtered([pool[i] for i in sel.indices], sel, pool)


def compress(
    task: TaskLike,
    *,
    rate: float = 0.5,
    fields: FieldMap | dict | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    **options: Any,
):
    """Token-compress ``task``'s examples to ``rate`` of their scorer tokens (``CompressConfig``:
    ``scorer=``, ``fidelity_floor=``, ...); returns the ``CompressResult`` (examples, records, summary),
    written as JSONL to ``out`` when given."""
    from damoc.data.compress import CompressConfig, compress_examples

    cfg = _options(CompressConfig, "compress", rate=rate, **options)
    examples = _examples(task, fields)
    with using(device, dtype):
        result = compress_examples(examples, cfg)
    if out is not None:
        write_jsonl_atomic(out, [e.to_row() for e in result.examples])
    return result


def _calibrated(
    family: str, model, tokenizer, method, spec, calibration, out, overwrite, device, dtype, fmt="dense"
):
    from damoc.model.calibrated.config import CalibrationConfig
    from damoc.model.calibrated.run import (
        calibration_sequences,
        check_method,
        compression_record,
        mixing_weights,
        needs_calibration,
        storage_text,
    )

    check_method(method, family)
    calib_cfg = _options(CalibrationConfig, family, **calibration)
    if out is not None:
        check_output_dir(out, overwrite)
    with using(device, dtype):
        exec_device = resolve_device(device or "auto")
        if isinstance(model, str | Path):
            from damoc.model.calibrated.run import load_for_offload

            mdl, tok, exec_device = load_for_offload(str(model))
            name = str(model)
        else:
            mdl, tok, name = _load(model, tokenizer, device, dtype)
    from damoc.model.arch import save_dtype
    from damoc.model.calibrated.export import COMPRESSED, check_exportable
    from damoc.model.calibrated.pipeline import compress_model

    packed = family == "quantize" and fmt == COMPRESSED and out is not None
    if packed:
        check_exportable(mdl, spec)  # the format's limits, before the work
    calib = calibration_sequences(tok, calib_cfg) if needs_calibration(method) else {}
    result = compress_model(
        mdl, calib, mixing_weights(calib_cfg), method, spec, calib_cfg.batch_size, exec_device
    )
    job = {"model": name, "method": method, family: spec.model_dump(mode="json"), **calib_cfg.model_dump()}
    storage = storage_text(family, fmt if family == "quantize" else "dense", save_dtype(mdl)) if out else ""
    record = compression_record(job, result, storage)
    path = None
    if out is not None:
        from damoc.model.calibrated.checkpoint import save_checkpoint

        # packing changes the model it packs: a copy is packed, the returned model keeps its float weights
        saved = copy.deepcopy(mdl) if packed and result.payloads else mdl
        with atomic_output_dir(out, overwrite) as tmp:
            save_checkpoint(saved, tok, tmp, record, result.payloads or None, spec, fmt, save_dtype(mdl))
        path = Path(out)
    return CompressedModel(mdl, tok, record, path)


_CALIBRATION_KEYS = ("general", "domain", "alpha", "samples", "length", "batch_size", "seed", "dev_size")


def prune_calibrated(
    model: ModelLike,
    *,
    method: str = "sparsegpt",
    sparsity: float | None = None,
    pattern: str | None = None,
    tokenizer=None,
    out: str | Path | None = None,
    overwrite: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    **options: Any,
) -> CompressedModel:
    """Cross-calibrated pruning (magnitude, wanda, sparsegpt), unstructured (``sparsity=``) or N:M
    (``pattern="2:4"``); calibration from ``general=`` and ``domain=`` text mixed by ``alpha=``."""
    from damoc.model.calibrated.config import PruneSpec

    calibration = {k: options.pop(k) for k in list(options) if k in _CALIBRATION_KEYS}
    spec = _options(PruneSpec, "prune_calibrated", sparsity=sparsity, pattern=pattern, **options)
    return _calibrated("prune", model, tokenizer, method, spec, calibration, out, overwrite, device, dtype)


def quantize(
    model: ModelLike,
    *,
    method: str = "gptq",
    bits: int = 4,
    tokenizer=None,
    out: str | Path | None = None,
    overwrite: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    format: str = "compressed-tensors",  # noqa: A002 - the command's option
    **options: Any,
) -> CompressedModel:
    """Cross-calibrated weight quantization (gptq, rtn) to ``bits`` (``group_size=``, ``act_order=``, ...);
    the model keeps dequantized weights; ``out=`` writes a checkpoint in ``format``: compressed-tensors
    (packed integers, what vLLM and transformers load) or dense (the dequantized weights)."""
    from damoc.model.calibrated.config import QuantSpec
    from damoc.model.calibrated.export import FORMATS

    if format not in FORMATS:
        raise DamocError(f"unknown format '{format}' (known: {', '.join(FORMATS)})")
    calibration = {k: options.pop(k) for k in list(options) if k in _CALIBRATION_KEYS}
    spec = _options(QuantSpec, "quantize", bits=bits, **options)
    return _calibrated(
        "quantize", model, tokenizer, method, spec, calibration, out, overwrite, device, dtype, format
    )


def tiny_candidates(root: str | Path | None = None, archs: Sequence[str] = ("llama", "qwen2")) -> list[str]:
    """Directories of tiny random models (seconds on a CPU, nothing downloaded) for trying the API."""
    from damoc.testing import save_tiny_model

    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="damoc-tiny-"))
    return [str(save_tiny_model(base / arch, arch, n_layers=4, seed=i)) for i, arch in enumerate(archs)]
