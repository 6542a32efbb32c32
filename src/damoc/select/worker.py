"""One candidate's work units, in the candidate's own process: ``python -m damoc.select.worker JOB.json``.

A unit is the candidate scored by one method:
- ``proxy``: load → remove layers (+ merge) → [cross-calibrated pruning/quantization] → proxy fine-tune on the compressed subset → score on dev;
- ``zero_shot`` / ``few_shot``: load the uncompressed candidate → score on dev (few-shot with shots);
- ``full``: load → full fine-tune on the whole (bounded) training split → score on dev (ground truth).

The worker writes a :class:`UnitRecord` per unit as soon as it is done (status ``failed`` with a
one-line error when the unit fails, and the next unit goes on); the process exits when the
candidate is done, so its memory goes back to the system before the next candidate.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Literal

from damoc.config import StrictModel, parse_config
from damoc.errors import DamocError
from damoc.evaluate.metrics import get_metric
from damoc.evaluate.scoring import score_examples
from damoc.hardware import DeviceName, DTypeName, resolve_device
from damoc.io.files import write_json_atomic
from damoc.io.prompts import format_prompts
from damoc.io.redact import install_log_redaction, redact
from damoc.io.tasks import Example, FieldMap, read_jsonl, to_examples
from damoc.logging_utils import set_progress_sink, setup_logging
from damoc.model.arch import load_model, num_layers
from damoc.model.layer_pruning import LayerPruneConfig, prune_layers
from damoc.select.calibrated_stage import apply_calibrated
from damoc.select.config import ModelSettings, SelectEval
from damoc.select.orphans import die_with_parent
from damoc.select.peak_memory import peak_gpu_mb, peak_rss_mb, reset_peak
from damoc.select.records import Method, MetricScore, UnitRecord, now_iso
from damoc.train.checkpoint import remove as remove_checkpoint
from damoc.train.finetune import FinetuneConfig, finetune

LOG = logging.getLogger("damoc.select.worker")  # also when run as __main__ (python -m)


class UnitSpec(StrictModel):
    """Everything a worker needs; written as JSON beside the record."""

    candidate: str
    slug: str
    method: Method
    record_path: str
    dev_path: str
    train_path: str | None = None  # proxy: the compressed subset; full: the whole training split
    shots_path: str | None = None  # few-shot examples
    calib_path: str | None = None  # texts for layer importance (proxy)
    labels: list[str] | None = None
    eval: SelectEval
    finetune: FinetuneConfig | None = None
    model: ModelSettings | None = None
    train_target: Literal["answer", "label"] = "answer"
    device: DeviceName = "auto"
    dtype: DTypeName = (
        "auto"  # the candidate's weights (auto: float32 on a CPU, the checkpoint's own on a GPU)
    )
    threads: int | None = None
    # seconds between saves of the fine-tune's state (RunSettings.checkpoint_every_s); None = no saves
    checkpoint_every_s: float | None = 600.0
    seed: int = 0
    cache_key: str | None = None
    spec_hash: str | None = None


class CandidateJob(StrictModel):
    """The units of one candidate, run in order in one worker process."""

    candidate: str
    slug: str
    job_path: str
    log_path: str
    units: list[UnitSpec]
    timeout_s: float | None = None  # for the whole process
    progress_s: float | None = None  # seconds between progress reports of long loops; None = none

    @property
    def progress_path(self) -> Path:
        """Where the worker keeps its latest progress line (beside its log)."""
        return Path(self.log_path).with_name("progress.json")

    def save(self) -> Path:
        return write_json_atomic(self.job_path, self.model_dump(mode="json"))


def read_progress(job: CandidateJob) -> str | None:
    """The latest progress line a running worker reported (None when it has reported none)."""
    try:
        data = json.loads(job.progress_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    line = data.get("line") if isinstance(data, dict) else None
    return f"{data.get('unit')}: {line}" if line else None


class _ProgressFile:
    """The worker's progress sink: each line goes to the log and, atomically, to ``progress.json``."""

    def __init__(self, job: CandidateJob):
        self.path = job.progress_path
        self.unit = ""

    def __call__(self, line: str) -> None:
        LOG.info("%s: %s", self.unit, line)
        try:
            write_json_atomic(self.path, {"unit": self.unit, "line": line, "at": now_iso()})
        except OSError:  # a status file is never worth failing the work for
            pass


def read_examples(path: str | Path) -> list[Example]:
    rows = read_jsonl(path)
    return to_examples(rows, FieldMap(), source=str(path)) if rows else []


def _pairs(
    examples: list[Example], target: str, tok=None, prompt_format: str = "raw"
) -> list[tuple[str, str]]:
    """(prompt, target) training pairs in the unit's prompt format (the one its scoring uses)."""
    if target == "label":
        examples = [e for e in examples if e.label is not None]
    prompts = format_prompts(tok, examples, prompt_format)
    if target == "label":
        return [(p, e.label or "") for p, e in zip(prompts, examples, strict=True)]
    return [(p, e.answer) for p, e in zip(prompts, examples, strict=True)]


def _count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_prune_config(settings: ModelSettings):
    """The layer-pruning config of a run's model settings (a one-line error for bad options)."""
    options = dict(settings.prune_options)
    options["fraction"] = settings.layer_fraction
    if settings.merge is not None:
        options["merge"] = settings.merge
    options.setdefault("calib_samples", settings.calibration_rows)
    options.setdefault("calib_length", settings.calibration_max_length)
    return parse_config(LayerPruneConfig, options, where="model")


def _prune(model, tok, spec: UnitSpec, rec: UnitRecord) -> None:
    """Remove ``model.layer_fraction`` of the layers (+ merge), in place; fills the record."""
    settings = spec.model
    if settings is None or settings.layer_fraction <= 0:
        return

    cfg = layer_prune_config(settings)
    texts = (
        [e.text() for e in read_examples(spec.calib_path)][: settings.calibration_rows]
        if spec.calib_path
        else []
    )
    if not texts:
        raise DamocError("layer pruning needs calibration texts but the training subset is empty")
    report = prune_layers(model, tok, texts, cfg)
    rec.layers_removed = [int(i) for i in getattr(report, "removed", [])]
    calib = getattr(report, "calib_tokens", None)
    if calib is None:
        calib = sum(len(tok(t, truncation=True, max_length=cfg.calib_length)["input_ids"]) for t in texts)
    rec.prep_tokens += int(calib)


def _calibrate(model, tok, spec: UnitSpec, rec: UnitRecord) -> None:
    """The optional cross-calibrated pruning/quantization after layer removal; fills the record."""
    settings = spec.model.calibrated if spec.model is not None else None
    if settings is None:
        return

    texts = [e.text() for e in read_examples(spec.calib_path)] if spec.calib_path else []
    rec.compression = apply_calibrated(model, tok, settings, texts)
    rec.prep_tokens += int(sum(rec.compression["tokens"].values()))


def run_unit(spec: UnitSpec) -> UnitRecord:
    """Do one unit of work and return its record (raises on failure; :func:`main` records the error)."""
    import torch

    rec = UnitRecord(
        candidate=spec.candidate,
        slug=spec.slug,
        method=spec.method,
        status="ok",
        metric=spec.eval.metric,
        higher_is_better=True,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=now_iso(),
        cache_key=spec.cache_key,
        spec_hash=spec.spec_hash,
        lr=spec.finetune.lr if spec.finetune else None,
    )
    if spec.threads:
        torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    device = resolve_device(spec.device)
    rec.device = device
    reset_peak()
    t_all = time.perf_counter()
    cpu0 = time.process_time()

    t0 = time.perf_counter()
    model, tok = load_model(spec.candidate, device=device, dtype=spec.dtype)
    rec.stage_s["load"] = time.perf_counter() - t0
    rec.n_params_orig = _count_params(model)

    if spec.method == "proxy":
        t0 = time.perf_counter()
        _prune(model, tok, spec, rec)
        rec.stage_s["prune"] = time.perf_counter() - t0
        if spec.model is not None and spec.model.calibrated is not None:
            t0 = time.perf_counter()
            _calibrate(model, tok, spec, rec)
            rec.stage_s["calibrated"] = time.perf_counter() - t0
    if spec.method in ("proxy", "full"):
        train = read_examples(spec.train_path) if spec.train_path else []
        pairs = _pairs(train, spec.train_target, tok, spec.eval.prompt_format)
        if not pairs:
            raise DamocError(f"no training rows for the {spec.method} fine-tune")
        t0 = time.perf_counter()
        every = spec.checkpoint_every_s
        result = finetune(
            model,
            tok,
            pairs,
            spec.finetune or FinetuneConfig(),
            desc="fine-tune",
            checkpoint=checkpoint_path(spec) if every else None,
            checkpoint_every_s=every or 0.0,
        )
        model = result.model
        rec.stage_s["finetune"] = time.perf_counter() - t0
        rec.n_train, rec.train_steps, rec.train_tokens = len(pairs), result.steps, result.tokens
        if result.losses:
            rec.train_loss_first, rec.train_loss_last = result.losses[0], result.losses[-1]

    rec.n_params = _count_params(model)
    rec.n_layers = num_layers(model)
    dev = read_examples(spec.dev_path)
    shots = read_examples(spec.shots_path) if spec.method == "few_shot" and spec.shots_path else []
    t0 = time.perf_counter()
    score = score_examples(model, tok, dev, spec.eval, shots=shots, labels=spec.labels)
    rec.score, rec.higher_is_better, rec.n_dev = score.value, score.higher_is_better, score.n_examples
    rec.eval_tokens = score.tokens
    rec.per_example = score.per_example
    rec.predictions = score.predictions
    for name in spec.eval.extra_metrics:
        extra = score_examples(
            model, tok, dev, spec.eval.model_copy(update={"metric": name}), shots=shots, labels=spec.labels
        )
        rec.eval_tokens += extra.tokens
        rec.extra[name] = MetricScore(
            value=extra.value,
            higher_is_better=extra.higher_is_better,
            per_example=extra.per_example,
            predictions=extra.predictions,
        )
    rec.stage_s["eval"] = time.perf_counter() - t0
    rec.wall_s = time.perf_counter() - t_all
    rec.cpu_s = time.process_time() - cpu0
    rec.peak_rss_mb, rec.peak_gpu_mb = peak_rss_mb(), peak_gpu_mb()
    rec.finished_at = now_iso()
    return rec


def checkpoint_path(spec: UnitSpec) -> Path:
    """Where the unit's fine-tune keeps its state while it runs (beside the record)."""
    return Path(spec.record_path).with_suffix(".finetune.pt")


def failed_record(spec: UnitSpec, error: str, wall_s: float = 0.0) -> UnitRecord:
    return UnitRecord(
        candidate=spec.candidate,
        slug=spec.slug,
        method=spec.method,
        status="failed",
        error=error,
        metric=spec.eval.metric,
        higher_is_better=get_metric(spec.eval.metric).higher_is_better,
        wall_s=wall_s,
        host=socket.gethostname(),
        pid=os.getpid(),
        finished_at=now_iso(),
        cache_key=spec.cache_key,
        spec_hash=spec.spec_hash,
        lr=spec.finetune.lr if spec.finetune else None,
    )


def failure_detail(exc: BaseException) -> str:
    """The whole account of a failure: the traceback, and what the library reported (a model's load report,
    kept by :class:`~damoc.model.arch.ModelLoadError`), for the log and the record."""
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).strip()
    detail = str(getattr(exc, "detail", "") or "").strip()
    return redact(f"{trace}\n\n{detail}" if detail else trace)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return redact(f"{type(exc).__name__}: {first}" if not isinstance(exc, DamocError) else first)


def run_job(job: CandidateJob) -> list[UnitRecord]:
    """Run the candidate's units in order; each record is saved (atomically) as soon as it exists.

    With ``job.progress_s``, long loops (fine-tuning steps, scoring batches) report how far they are
    every that many seconds, to the log and to ``progress.json`` (read by the backend).
    """
    import gc

    sink = _ProgressFile(job) if job.progress_s else None
    set_progress_sink(sink, job.progress_s or 0)
    out = []
    try:
        for spec in job.units:
            if sink is not None:
                sink.unit = spec.method
            LOG.info("%s / %s: start (pid %d)", spec.candidate, spec.method, os.getpid())
            t0 = time.perf_counter()
            try:
                rec = run_unit(spec)
            except Exception as exc:  # recorded, so the other units and candidates go on
                rec = failed_record(spec, one_line(exc), time.perf_counter() - t0)
                rec.error_detail = failure_detail(exc)
                sys.stderr.write(rec.error_detail + "\n")  # worker.log keeps the whole account
                sys.stderr.flush()
            rec.save(spec.record_path)
            if rec.status == "ok":  # the fine-tune's saved state is no longer needed
                remove_checkpoint(checkpoint_path(spec))
            out.append(rec)
            LOG.info(
                "%s / %s: %s score=%s (%.1f s)",
                spec.candidate,
                spec.method,
                rec.status,
                rec.score,
                rec.wall_s,
            )
            gc.collect()
    finally:
        set_progress_sink(None)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m damoc.select.worker JOB.json\n")
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    die_with_parent()
    setup_logging()

    install_log_redaction()
    job = CandidateJob.model_validate_json(Path(argv[0]).read_text(encoding="utf-8"))
    run_job(job)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
