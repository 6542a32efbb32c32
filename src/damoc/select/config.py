"""The ``select`` job: a task, candidates, a metric, and how cheap the proxy should be.

Every number the pipeline uses is a field here with its default; a YAML job file or CLI flags fill it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from damoc.config import JobConfig, StrictModel
from damoc.evaluate.metrics import METRICS
from damoc.evaluate.scoring import EvalConfig
from damoc.hardware import DeviceName, DTypeName, Precision, resolve_device, resolve_precision
from damoc.io.hashing import digest
from damoc.io.prompts import PromptFormat
from damoc.io.redact import redact
from damoc.io.tasks import FieldMap
from damoc.model.calibrated.config import GENERAL_DEFAULT, PruneSpec, QuantSpec
from damoc.train.finetune import FinetuneConfig


class TaskSettings(StrictModel):
    """The task: a file/directory or a built-in name (``pubmedqa``, ``finance``)."""

    path: str  # a JSONL/JSON/CSV file, a datasets directory, a hub dataset (org/name) or a built-in name
    fields: FieldMap = Field(default_factory=FieldMap)  # the task's column names (question, context, ...)
    dev_path: str | None = None  # a separate dev file; otherwise ``dev_size`` rows are held out
    dev_size: int | float = 0.2  # held-out dev rows (a count, or a fraction < 1)
    max_rows: int | None = Field(None, ge=2)  # bound the task (train + held-out dev) to this many rows
    seed: int = Field(0, ge=0)  # seed of the row shuffle that picks the held-out dev rows and max_rows
    # a source with named splits (a saved DatasetDict, a hub dataset org/name) trains on its train split and
    # scores on its validation split (or dev/valid/val/test); name others here, e.g. {dev: test}
    splits: dict[Literal["train", "dev"], str] | None = None
    subset: str | None = None  # a hub dataset's configuration (subset) name

    @field_validator("dev_size")
    @classmethod
    def _dev_size(cls, v):
        if not v > 0:
            raise ValueError("dev_size must be > 0 (a fraction < 1 or a row count)")
        return v


class DataSettings(StrictModel):
    """Data-level compression, applied once to the training split and shared by all candidates."""

    filter: str | None = "random"  # a registered filter method (damoc filter --list), or null for none
    budget: int | float = 0.1  # fraction (< 1) or number of training rows kept by the filter
    # the filter's own options (docs/data_filters.md) and its context, e.g. reference_model, embedder
    filter_options: dict[str, Any] = Field(default_factory=dict)
    compress_rate: float | None = 0.5  # kept/original tokens; null = no token compression
    compress_options: dict[str, Any] = Field(default_factory=dict)  # other CompressConfig fields
    rewrite: bool = False  # iterative rewriting (slow on CPU)
    # RewriteConfig fields (docs/rewriting.md); no rewriter or endpoint: the local smollm2-135m
    rewrite_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("budget")
    @classmethod
    def _budget(cls, v):
        if v <= 0:
            raise ValueError("budget must be > 0 (a fraction < 1 or a row count)")
        return v

    @field_validator("compress_rate")
    @classmethod
    def _rate(cls, v):
        if v is not None and not 0 < v <= 1:
            raise ValueError("compress_rate must be in (0, 1] or null")
        return v


class CalibratedSettings(StrictModel):
    """Optional cross-calibrated compression of each candidate after layer removal (docs/calibrated.md).

    The domain calibration text is the proxy's own training subset (before token compression); the
    general text is the bundled SQuAD paragraphs unless set. Hessians mix as (1-α) H_general + α H_domain.
    """

    method: str = (
        "sparsegpt"  # a calibrated method: magnitude, wanda, sparsegpt (prune); gptq, rtn (quantize)
    )
    prune: PruneSpec = Field(default_factory=PruneSpec)  # pruning methods: sparsity / N:M pattern
    quant: QuantSpec = Field(default_factory=QuantSpec)  # quantization methods: bits, group size
    alpha: float = Field(0.5, ge=0.0, le=1.0)  # weight of the domain Hessian
    general: str | None = GENERAL_DEFAULT  # general text source ('general' = bundled), or null for none
    samples: int = Field(16, ge=1)  # calibration sequences per source
    length: int = Field(128, ge=8)  # tokens per calibration sequence
    batch_size: int = Field(8, ge=1)  # sequences per block forward

    @model_validator(mode="after")
    def _sources(self) -> CalibratedSettings:
        if self.alpha < 1.0 and not self.general:
            raise ValueError(
                "alpha < 1 mixes in general text, but general is null (set alpha: 1.0 or a source)"
            )
        return self


class ModelSettings(StrictModel):
    """Model-level compression, per candidate: remove low-importance layers and merge them, then
    optionally compress the weights with cross-calibration (``calibrated``)."""

    layer_fraction: float = 0.25  # fraction of decoder layers removed (0 = keep all)
    merge: str | None = None  # merge method for removed layers; null = the layer-pruning default
    calibration_rows: int = Field(16, ge=1)  # training texts used to score layer importance
    calibration_max_length: int = Field(256, ge=2)  # tokens per calibration text (longer ones are cut)
    prune_options: dict[str, Any] = Field(default_factory=dict)  # other LayerPruneConfig fields
    calibrated: CalibratedSettings | None = None  # cross-calibrated pruning/quantization; null = off

    @field_validator("layer_fraction")
    @classmethod
    def _frac(cls, v):
        if not 0 <= v < 1:
            raise ValueError("layer_fraction must be in [0, 1)")
        return v


class SelectEval(EvalConfig):
    """Dev-split scoring (same for the proxy, the baselines and the ground truth, except ``precision``: it
    sets the proxies' and baselines' scoring; the ground truth's is ``validate.eval_precision``)."""

    dev_rows: int | None = Field(64, ge=2)  # dev rows scored; the task must hold at least this many
    few_shot_k: int = Field(2, ge=0)  # shots (from the training split) for the few-shot baseline
    # more metrics scored on the same dev rows by every unit (e.g. the task metric beside answer_bpb):
    # one fine-tune, several scores; the leaderboard ranks by ``metric``, the records keep every score
    extra_metrics: list[str] = Field(default_factory=list)
    train_target: Literal["auto", "answer", "label"] = "auto"  # auto: the label for label metrics
    # per-candidate prompt formats overriding ``prompt_format`` (keys: candidates as listed)
    prompt_formats: dict[str, PromptFormat] = Field(default_factory=dict)


class ValidateSettings(StrictModel):
    """Ground truth: full fine-tune of every uncompressed candidate on the (bounded) training split."""

    enabled: bool = False  # run the ground truth (slow): a full fine-tune of every candidate
    train_rows: int | None = Field(None, ge=1)  # bound the ground-truth training rows (null: the whole split)
    # the reference trains in fp32 unless told otherwise (precision: auto or bf16 to speed it up)
    finetune: FinetuneConfig = Field(
        default_factory=lambda: FinetuneConfig(
            method="full", lr=2e-5, epochs=1.0, max_length=256, precision="fp32"
        )
    )
    # Learning rates tried per candidate (one full fine-tune each; ``finetune.lr`` is then ignored): each
    # candidate's truth is its best dev score over the grid, as a user tuning the rate would get. One shared
    # rate can favour one model (a large-vocabulary head drifts under Adam at a rate another model needs).
    lr_grid: list[float] | None = None
    cache_dir: str = "~/.cache/damoc/groundtruth"  # finished full fine-tunes are kept here for any later run
    # Scoring precision of the full fine-tunes (the reference: exact by default, whatever ``eval.precision``
    # the cheap sweep uses); a value other than fp32 enters the ground-truth cache key.
    eval_precision: Precision = "fp32"

    @field_validator("lr_grid")
    @classmethod
    def _lr_grid(cls, v):
        if v is None:
            return v
        if not v or any(not lr > 0 for lr in v):
            raise ValueError("lr_grid must list at least one positive learning rate")
        if len(set(v)) != len(v):
            raise ValueError("lr_grid lists a learning rate twice")
        return v

    def finetunes(self) -> list[FinetuneConfig]:
        """The full fine-tune settings to run per candidate (one per grid rate, or just ``finetune``)."""
        if self.lr_grid is None:
            return [self.finetune]
        return [self.finetune.model_copy(update={"lr": lr}) for lr in self.lr_grid]


class RunSettings(StrictModel):
    """Where and how the work runs."""

    run_dir: str = "runs/select"  # the run's records, report and leaderboard are written here
    backend: Literal["local", "ray"] = "local"  # local: one subprocess per candidate here; ray: Ray tasks
    jobs: int = 1  # candidates run at once (backend ray: a cap only when set; Ray schedules by resources)
    address: str | None = None  # Ray cluster address (backend ray); null starts a local Ray instance
    cpus_per_candidate: float = Field(1.0, gt=0)  # backend ray: CPUs each candidate's task asks for
    # backend ray: GPUs each candidate's task asks for; null: 1 when the cluster has GPUs, else 0
    gpus_per_candidate: float | None = Field(None, ge=0)
    max_retries: int = Field(1, ge=0)  # backend ray: re-runs of a task whose node or Ray worker died
    # backend ray: Ray's runtime_env for the run, e.g. {pip: ["damoc[ray]"]} where damoc is not installed
    runtime_env: dict[str, Any] | None = None
    gpu_ids: list[str] | None = None  # local backend: one GPU per running candidate (CUDA_VISIBLE_DEVICES)
    device: DeviceName = "auto"  # auto, cpu, cuda or cuda:N (with gpu_ids each worker sees its own GPU)
    dtype: DTypeName = "auto"  # candidates' weights: auto (float32 on a CPU, the checkpoint's own on a GPU)
    threads: int | None = Field(None, ge=1)  # torch threads per worker; null = the torch default
    timeout_s: float | None = Field(None, gt=0)  # per candidate process
    # seconds between progress lines of a running candidate (fine-tune steps, scoring batches) in its
    # worker.log, its progress.json and the terminal; 0 = none
    progress_s: float = Field(60.0, ge=0)
    # seconds of fine-tuning between saves of its state beside the unit's record (a killed run's --resume
    # continues a long fine-tune from there, not from step 0); null = no saves
    checkpoint_every_s: float | None = Field(600.0, gt=0)

    @field_validator("jobs")
    @classmethod
    def _jobs(cls, v):
        if v < 1:
            raise ValueError("jobs must be >= 1")
        return v


class ConfidenceSettings(StrictModel):
    """How sure the leaderboard is: a paired-bootstrap interval for every adjacent pair of each ranking
    (the proxy's, each baseline's, the ground truth's), over the dev rows and the proxy seeds
    (damoc.evaluate.paired; docs/selection.md).

    Sample YAML::

        confidence: {level: 0.95, n_boot: 2000, seed: 0}

    Fields:
        level: coverage of each interval; a pair whose interval holds 0 is "tied within noise"
        n_boot: bootstrap draws per pair
        seed: the resampling's seed (same records and seed, same intervals)
    """

    level: float = Field(0.95, gt=0.0, lt=1.0)
    n_boot: int = Field(2000, ge=100)
    seed: int = Field(0, ge=0)


class AdaptiveSettings(StrictModel):
    """Adaptive proxy budget: successive halving over proxy size with paired-interval elimination
    (damoc.select.adaptive; docs/selection.md). Every candidate starts on a small proxy; after each round
    the candidates whose interval against the round's leader excludes zero (clearly worse) are dropped,
    and the others go on to a proxy ``growth`` times larger, up to the run's own proxy (``data.budget``
    rows, ``proxy.epochs``, ``eval.dev_rows``), which the last round runs. The rounds stop early once the
    leader is separated from every other candidate, or when the next round would not fit the budget.

    Sample YAML::

        adaptive: {enabled: true, start_rows: 4, start_dev_rows: 10, growth: 2.0, rounds: 3, budget_s: 600}

    Fields:
        enabled: false (default): off unless asked (--adaptive); null: on with min_candidates or more
            candidates; true: on. Off by default because when the full proxy is small, each round's fixed
            cost (loading the model, starting the worker, scoring) outweighs what dropping a candidate
            early saves (benchmarks/results/adaptive_vs_fixed.md)
        min_candidates: with enabled null, the candidate count from which adaptive rounds are on
        start_rows: proxy training rows in round 0 (then times growth per round)
        start_epochs: proxy epochs in round 0 (then times growth per round)
        start_dev_rows: dev rows scored in round 0 (then times growth per round)
        growth: the factor each resource grows by per round, up to the full proxy's
        rounds: rounds at most; the last one runs the full proxy
        level: a candidate is dropped when its paired interval against the leader, at this coverage,
            excludes 0
        keep_fraction: also keep at most this share of the candidates per round (plain successive halving)
        budget_s: stop before a round whose estimated cost would pass this many unit-seconds (the proxy
            units' summed wall seconds, as the report counts them; a resumed run counts the rounds it has)
        max_train_tokens: stop before a round whose estimated cost would pass this many proxy fine-tune
            tokens
    """

    enabled: bool | None = False
    min_candidates: int = Field(4, ge=2)
    start_rows: int = Field(4, ge=1)
    start_epochs: float = Field(1.0, gt=0.0)
    start_dev_rows: int = Field(10, ge=2)
    growth: float = Field(2.0, gt=1.0)
    rounds: int = Field(3, ge=1)
    level: float = Field(0.95, gt=0.0, lt=1.0)
    keep_fraction: float | None = Field(None, gt=0.0, le=1.0)
    budget_s: float | None = Field(None, gt=0.0)
    max_train_tokens: int | None = Field(None, gt=0)

    def active(self, n_candidates: int) -> bool:
        """Whether a run with ``n_candidates`` candidates runs the adaptive rounds."""
        if n_candidates < 2:
            return False
        return self.enabled if self.enabled is not None else n_candidates >= self.min_candidates


class SelectConfig(JobConfig):
    """A selection run (``damoc select``; docs/selection.md).

    Sample YAML (``examples/select_demo.yaml`` is a complete one)::

        job: select
        task: {path: pubmedqa, max_rows: 260, dev_size: 60}
        candidates: [smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b]
        data: {filter: random, budget: 12, compress_rate: 0.5}
        model: {layer_fraction: 0.0}
        proxy: {method: lora, epochs: 3.0}
        eval: {metric: answer_bpb, dev_rows: 20}
        run: {run_dir: runs/select_demo}

    Fields:
        task: the task and its dev split (TaskSettings)
        candidates: the models to rank: zoo names, local Hugging Face directories or cached HF ids
        data: the data stages, run once for every candidate (DataSettings)
        model: the per-candidate model compression (ModelSettings)
        proxy: the proxy fine-tune, the same for every candidate (FinetuneConfig)
        eval: how every candidate is scored on the dev rows (SelectEval)
        validate: the ground truth, full fine-tunes of the uncompressed candidates (ValidateSettings)
        confidence: the paired-bootstrap intervals of every ranking (ConfidenceSettings)
        adaptive: the adaptive proxy budget, in rounds (AdaptiveSettings)
        run: where and how the work runs (RunSettings)
        seed: seed of the data stages, the shots and the work units
    """

    job: Literal["select"] = "select"
    task: TaskSettings
    candidates: list[str]
    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    proxy: FinetuneConfig = Field(default_factory=lambda: FinetuneConfig(method="lora", epochs=1.0))
    eval: SelectEval = Field(default_factory=SelectEval)
    baselines: bool = True  # zero-shot and few-shot scores of the uncompressed candidates
    # flag a candidate whose proxy score is worse than its uncompressed zero-shot score by more than this
    # fraction of it (damoc.select.checks; needs the baselines); null: no check
    compression_check: float | None = Field(0.0, ge=0.0)
    validate_: ValidateSettings = Field(default_factory=ValidateSettings, alias="validate")
    confidence: ConfidenceSettings = Field(default_factory=ConfidenceSettings)
    adaptive: AdaptiveSettings = Field(default_factory=AdaptiveSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    seed: int = Field(0, ge=0)

    model_config = {**JobConfig.model_config, "populate_by_name": True}

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, v: list[str]):
        if not v:
            raise ValueError("give at least one candidate (a zoo name or a model directory)")
        seen: set[str] = set()
        for c in v:
            key = candidate_key(c)
            if key in seen:
                raise ValueError(f"candidate '{c}' is listed twice")
            seen.add(key)
        return v

    @model_validator(mode="after")
    def _metric(self):
        for name in [self.eval.metric, *self.eval.extra_metrics]:
            if name not in METRICS:
                METRICS.get(name)  # raises the helpful unknown-name error
        if self.eval.metric in self.eval.extra_metrics:
            raise ValueError(f"eval.extra_metrics repeats the main metric '{self.eval.metric}'")
        unknown = [c for c in self.eval.prompt_formats if c not in self.candidates]
        if unknown:
            raise ValueError(f"eval.prompt_formats names '{unknown[0]}', which is not a candidate")
        return self

    def prompt_format(self, candidate: str) -> str:
        """The prompt format of ``candidate``: its own entry in ``eval.prompt_formats``, else the job's."""
        return self.eval.prompt_formats.get(candidate, self.eval.prompt_format)

    def dump(self) -> dict[str, Any]:
        """The settings as written to the run directory (credentials in URLs masked)."""
        return redact(self.model_dump(mode="json", by_alias=True))


def candidate_key(name: str) -> str:
    """Two spellings of the same candidate (``./m`` and ``m/``) map to the same key."""
    p = Path(name).expanduser()
    return str(p.resolve()) if p.exists() else name.strip().lower()


def candidate_slug(name: str) -> str:
    """A file-name-safe id for a candidate, unique within a run."""
    base = Path(name.rstrip("/")).name or name
    safe = "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in base)[:48]
    return f"{safe}-{hashlib.sha1(candidate_key(name).encode()).hexdigest()[:6]}"


# The generation of the settings' defaults. Bump it when an existing field's default changes: settings
# hashes leave defaulted fields out, so without the bump a resumed run would reuse work done under the old
# default. tests/test_settings_hash.py holds the defaults of this generation and fails when one changes.
SETTINGS_EPOCH = 1


def hash_default(info: Any) -> Any:
    """The value a field's settings hash leaves out besides its default: ``hash_default`` in its
    ``json_schema_extra`` (a field whose default became ``auto`` names the value its old default had, so
    records made under that value stay valid where ``auto`` resolves to it). ``_NONE`` when it has none."""
    extra = getattr(info, "json_schema_extra", None)
    return extra["hash_default"] if isinstance(extra, dict) and "hash_default" in extra else _NONE


_NONE = object()


def _drop_hash_defaults(obj: Any, data: Any) -> Any:
    """``data`` (``obj`` dumped) without the fields whose value is their :func:`hash_default`."""
    if hasattr(obj, "model_dump") and isinstance(data, dict):
        for name, info in type(obj).model_fields.items():
            if name not in data:
                continue
            value = getattr(obj, name)
            if value == hash_default(info):
                del data[name]
            else:
                data[name] = _drop_hash_defaults(value, data[name])
    elif isinstance(obj, list | tuple) and isinstance(data, list):
        return [_drop_hash_defaults(o, d) for o, d in zip(obj, data, strict=False)]
    elif isinstance(obj, dict) and isinstance(data, dict):
        return {k: _drop_hash_defaults(obj.get(k), v) for k, v in data.items()}
    return data


def settings_payload(obj: Any, exclude: set[str] | None = None) -> Any:
    """``obj`` as JSON data with every pydantic field at its default (or hash default) left out, recursively."""
    if hasattr(obj, "model_dump"):
        return _drop_hash_defaults(obj, obj.model_dump(mode="json", exclude_defaults=True, exclude=exclude))
    if isinstance(obj, dict):
        return {k: settings_payload(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [settings_payload(v) for v in obj]
    return obj


def config_hash(obj: Any) -> str:
    """Hash of the settings that differ from their defaults, and of the defaults' generation.

    A field added later with a default leaves the hash, and so a resumable run's records, as they were.
    """
    return digest({"settings": settings_payload(obj), "epoch": SETTINGS_EPOCH})


def resolve_auto(cfg: SelectConfig) -> SelectConfig:
    """``cfg`` with every ``precision: auto`` replaced by what the run's device computes natively (bf16
    where it is native, fp32 elsewhere), so that records, hashes and the report name the precision used.

    A device that does not exist is a one-line error here, before anything is written.
    """
    device = resolve_device(cfg.run.device)

    def concrete(p: str) -> str:
        return resolve_precision(p, device)

    truth = cfg.validate_.model_copy(
        update={
            "finetune": cfg.validate_.finetune.model_copy(
                update={"precision": concrete(cfg.validate_.finetune.precision)}
            ),
            "eval_precision": concrete(cfg.validate_.eval_precision),
        }
    )
    return cfg.model_copy(
        update={
            "eval": cfg.eval.model_copy(update={"precision": concrete(cfg.eval.precision)}),
            "proxy": cfg.proxy.model_copy(update={"precision": concrete(cfg.proxy.precision)}),
            "validate_": truth,
        }
    )
