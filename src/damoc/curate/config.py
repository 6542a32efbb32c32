"""Job configs: ``curate`` (SAE curation alone) and ``finescope`` (curate -> prune -> distill -> score)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from damoc.config import JobConfig, StrictModel
from damoc.curate.train_sae import SAETrainConfig
from damoc.hardware import HardwareSettings
from damoc.model.structured.config import StructuredPruneConfig
from damoc.train.distill import DistillConfig


class CurationSettings(StrictModel):
    """How to pick the top M pool rows that look like the seeds."""

    method: str = "sae"  # registered in damoc.curate.curation.CURATORS
    compare: list[str] = ["embed", "random"]  # also run these and report their precision
    top: int = Field(200, ge=1)  # M: rows to keep
    max_seeds: int = Field(10, ge=1)  # use at most this many seed rows (the first ones)
    min_seeds: int = Field(3, ge=1)  # fewer seed rows than this is an error
    layer: int | None = None  # decoder layer whose output feeds the SAE; None = the middle one
    reduce: Literal["mean", "max"] = "mean"  # over seeds, of the cosine similarity
    center: bool = True  # subtract the pool's mean signature before the cosine (all methods)
    idf: bool = True  # weight SAE latents by inverse document frequency over the pool
    max_length: int = Field(128, ge=4)  # tokens per row fed to the model
    batch_size: int = Field(8, ge=1)  # rows per forward pass through the model
    max_train_tokens: int = Field(100_000, ge=16)  # SAE training tokens (sampled from the pool)
    sae: SAETrainConfig = SAETrainConfig()  # the SAE's shape and training (SAETrainConfig)
    # a trained SAE to use instead of training one: a directory in damoc's layout (sae.safetensors +
    # sae_config.json) or sae-lens's (cfg.json + sae_weights.safetensors); its layer is used when
    # ``layer`` is None and the files name one
    sae_path: str | None = None
    # trained SAEs (and the pool's signatures) are kept here by (model, layer, pool, settings); null = off
    sae_cache: str | None = "~/.cache/damoc/sae"
    # the text of each row that is scored: text (question, context and answer), prompt (question and
    # context), question
    text_view: Literal["text", "prompt", "question"] = "text"
    domain_field: str = "domain"  # pool column holding a known domain label, for precision
    target_domain: str | None = None  # default: the most common domain among the seeds
    seed: int = Field(0, ge=0)  # seed of the random method's scores (the SAE has its own, sae.seed)


class CurateJob(CurationSettings, JobConfig, HardwareSettings):
    """Curate a pool against seed rows; writes the top rows (with scores) and a report.

    Sample YAML (``examples/curate.yaml``; docs/finescope.md)::

        job: curate
        pool: benchmarks/records/finescope/data/pool.jsonl
        seeds: benchmarks/records/finescope/data/seeds.jsonl
        model: smollm2-135m
        out: runs/curated.jsonl
        top: 48

    Fields:
        pool: the rows to pick from (a task file or a built-in task)
        seeds: a few in-domain rows (the first ``max_seeds`` are used)
        overwrite: replace an existing output file
        batch_size: rows per forward pass through the model
        sae: the SAE's shape and training (SAETrainConfig)
        seed: seed of the random method's scores (the SAE has its own, sae.seed)
        (every other field: the curation settings of CurationSettings)
    """

    job: Literal["curate"] = "curate"
    pool: str
    seeds: str
    model: str | None = None  # needed by the sae method
    out: str  # a .jsonl file; the report goes beside it as <stem>.report.json
    overwrite: bool = False
    save_sae: str | None = None  # also write the SAE the sae method used into this directory
    # the layout save_sae writes: damoc's (sae.safetensors + sae_config.json) or sae-lens's
    save_sae_format: Literal["damoc", "sae-lens"] = "damoc"


class ScoreSettings(StrictModel):
    """How each stage's domain score is measured (teacher-forced answer bits per byte, label accuracy)."""

    batch_size: int = Field(8, ge=1)  # eval rows per forward pass
    max_length: int = Field(384, ge=8)  # tokens per scored row (prompt cut from the left, answer kept)
    eval_rows: int = Field(100, ge=1)  # held-out domain rows scored per stage
    bootstrap: int = Field(2000, ge=100)  # draws of the paired bootstrap (self-distillation vs plain)
    bootstrap_level: float = Field(0.95, gt=0.0, lt=1.0)  # confidence level of the bootstrap interval
    bootstrap_seed: int = Field(0, ge=0)  # seed of the bootstrap's row resampling


class FinescopeJob(JobConfig, HardwareSettings):
    """FineScope end to end: curate the pool, prune on the curated rows, recover with self-distillation.

    Stages scored on the ``eval`` rows: source, pruned, pruned + plain fine-tune on the curated rows'
    gold answers, pruned + self-distillation on the same rows (same fine-tune settings).

    Sample YAML (``examples/finescope.yaml``; docs/finescope.md)::

        job: finescope
        model: smollm2-135m
        pool: benchmarks/records/finescope/data/pool.jsonl
        seeds: benchmarks/records/finescope/data/seeds.jsonl
        eval: benchmarks/records/finescope/data/eval.jsonl
        out: runs/finescope-smollm2
        curate: {top: 48}
        prune: {ratio: 0.3}
        distill: {teacher_mode: rewrite_reference, kl_weight: 1.0}

    Fields:
        model: the source model: a zoo name or a local Hugging Face directory
        pool: the rows to curate from (a task file or a built-in task)
        seeds: a few in-domain rows (the first ``curate.max_seeds`` are used)
        overwrite: replace a non-empty run directory
        curate: the curation settings (CurationSettings)
        prune: the structured-pruning settings (StructuredPruneConfig)
        score: how each stage is scored (ScoreSettings)
    """

    job: Literal["finescope"] = "finescope"
    model: str
    pool: str
    seeds: str
    eval: str  # held-out domain rows (question/context/answer[/label]); never trained on
    out: str  # run directory
    overwrite: bool = False
    curate: CurationSettings = CurationSettings()
    prune: StructuredPruneConfig = StructuredPruneConfig()
    distill: DistillConfig = DistillConfig()  # its finetune settings also drive the plain fine-tune
    score: ScoreSettings = ScoreSettings()
    save_models: bool = True  # write pruned/ and distilled/ checkpoints into the run directory
