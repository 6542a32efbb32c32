"""The two jobs: ``prune-calibrated`` and ``quantize`` (load → calibration data → compress → save)."""

from __future__ import annotations

import logging
import resource
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from damoc.errors import DamocError
from damoc.evaluate.perplexity import pack_sequences
from damoc.hardware import load_defaults, resolve_device, resolve_dtype
from damoc.io.files import atomic_output_dir, check_output_dir
from damoc.model.arch import load_model, load_tokenizer, resolve_model, save_dtype, source_dtype
from damoc.model.calibrated.checkpoint import save_checkpoint
from damoc.model.calibrated.config import CalibrationConfig, PruneCalibratedJob, QuantizeJob
from damoc.model.calibrated.export import COMPRESSED, DENSE, PACKED_FORMAT, check_exportable
from damoc.model.calibrated.general_text import load_source_texts
from damoc.model.calibrated.hessian import source_weights
from damoc.model.calibrated.methods import METHODS, method_family
from damoc.model.calibrated.pipeline import CompressionResult, compress_model

LOG = logging.getLogger(__name__)


def calibration_sequences(tok, cfg: CalibrationConfig) -> dict[str, torch.Tensor]:
    """Token windows (samples × length) of each configured source, from its calibration part."""
    out: dict[str, torch.Tensor] = {}
    for name, src in (("general", cfg.general), ("domain", cfg.domain)):
        if not src:
            continue
        texts = load_source_texts(src, "calib", cfg.dev_size, cfg.seed, cfg.val_size)
        out[name] = pack_sequences(tok, texts, cfg.samples, cfg.length, cfg.seed, what=f"{name} text '{src}'")
    return out


def mixing_weights(cfg: CalibrationConfig) -> dict[str, float]:
    return source_weights(cfg.alpha, bool(cfg.general), bool(cfg.domain))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


@dataclass
class CompressionRecord:
    """What ``damoc_calibrated.json`` holds: the job, the achieved numbers, per-layer statistics."""

    job: dict[str, Any]
    method: str
    family: str
    weights: dict[str, float]
    tokens: dict[str, int]
    sparsity: float
    wall_s: float
    peak_rss_mb: float
    layers: list[dict[str, Any]] = field(default_factory=list)
    storage: str = ""


def compression_record(job: dict[str, Any], result: CompressionResult, storage: str) -> CompressionRecord:
    """The record of a finished compression: the job as run, the achieved numbers, this process's peak memory."""
    return CompressionRecord(
        job=job,
        method=result.method,
        family=result.family,
        weights=result.weights,
        tokens=result.tokens,
        sparsity=result.sparsity,
        wall_s=result.wall_s,
        peak_rss_mb=peak_rss_mb(),
        layers=[asdict(s) for s in result.layers],
        storage=storage,
    )


def needs_calibration(method: str) -> bool:
    """Whether ``method`` reads calibration data (magnitude pruning and round-to-nearest do not)."""
    return getattr(METHODS.get(method), "needs_calibration", True)


def check_method(method: str, family: str) -> None:
    """A one-line error unless ``method`` is a registered method of ``family`` (prune or quantize)."""
    METHODS.entry(method)
    if method_family(method) != family:
        names = [e.name for e in METHODS.entries() if (e.family or "prune") == family]
        raise DamocError(f"'{method}' is not a {family} method (use one of: {', '.join(names)})")


def load_model_quietly(name: str, device: str | None = None, dtype=None):
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load_model(name, dtype=dtype, device=device)
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_for_offload(name: str):
    """``(model, tok, device)``: on an accelerator the model is loaded into CPU memory in the dtype it would
    have on the device, so that the sequential pipeline moves one block at a time onto the device."""
    device = resolve_device(load_defaults()["device"])
    if device == "cpu":
        model, tok = load_model_quietly(name, device="cpu")
        return model, tok, device
    source = source_dtype(resolve_model(name))
    asked = load_defaults()["dtype"]
    model, tok = load_model_quietly(name, device="cpu", dtype=resolve_dtype(asked, device, source))
    if asked == "auto" and source is not None:
        model._damoc_save_dtype = source
    return model, tok, device


def compress_job(job: PruneCalibratedJob | QuantizeJob, model=None, tok=None) -> CompressionRecord:
    """Run a job end to end; ``model``/``tok`` may be passed in (already loaded) to skip loading."""
    family = "prune" if isinstance(job, PruneCalibratedJob) else "quantize"
    spec = job.prune if isinstance(job, PruneCalibratedJob) else job.quant
    check_method(job.method, family)
    check_output_dir(job.out, job.overwrite)
    needs_data = needs_calibration(job.method)
    if model is None:
        tok = load_tokenizer(job.model)
    calib = calibration_sequences(tok, job.calibration) if needs_data else {}  # bad text fails before loading
    device = None
    if model is None:
        model, tok, device = load_for_offload(job.model)
    fmt = job.format if isinstance(job, QuantizeJob) else DENSE
    if family == "quantize" and fmt == COMPRESSED:
        check_exportable(model, job.quant)  # before the work: the format's limits are known up front
    dtype = save_dtype(model)  # the source's, or the one asked for with --dtype
    result: CompressionResult = compress_model(
        model, calib, mixing_weights(job.calibration), job.method, spec, job.calibration.batch_size, device
    )
    record = compression_record(job.model_dump(mode="json"), result, storage_text(family, fmt, dtype))
    with atomic_output_dir(job.out, job.overwrite) as tmp:
        save_checkpoint(model, tok, tmp, record, result.payloads or None, spec, fmt, dtype)
    return record


def storage_text(family: str, fmt: str, dtype: torch.dtype) -> str:
    """How the checkpoint holds the weights, in words (for the record)."""
    name = str(dtype).removeprefix("torch.")
    if family == "prune":
        return f"pruned weights as exact zeros in dense {name} safetensors"
    if fmt == COMPRESSED:
        return f"compressed-tensors {PACKED_FORMAT}: integer weights packed in int32, {name} scales"
    return f"dequantized weights in dense {name} safetensors"
