"""Layer pruning, top to bottom: score the layers, pick the ones to remove, merge them, remove them.

This is the entry the selection pipeline calls::

    report = prune_layers(model, tok, texts, LayerPruneConfig(fraction=0.25))
    save_pruned(model, tok, out_dir, report)
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from damoc.config import StrictModel
from damoc.errors import DamocError
from damoc.io.files import atomic_output_dir, write_json_atomic
from damoc.model.arch import decoder_layers, save_model
from damoc.model.importance import calibration_batches, choose_layers, protected_layers, score_batches
from damoc.model.merge import MERGES, MergeContext, MergeSettings
from damoc.model.removal import remove_layers, validate_removal

LOG = logging.getLogger(__name__)

RECORD_NAME = "damoc_prune.json"


class LayerPruneConfig(StrictModel):
    """How many layers to remove, how to pick them, and how to merge them into the kept ones."""

    remove: int | None = Field(None, ge=0, description="number of layers to remove")
    fraction: float | None = Field(None, gt=0.0, lt=1.0, description="fraction of layers to remove")
    layers: list[int] | None = Field(None, description="exact layers to remove (skips scoring)")
    metric: Literal["bi", "angular"] = "bi"  # bi: lowest block influence; angular: best contiguous block
    merge: str = (
        "linear"  # merge method (docs/merging.md); the best one in benchmarks/results/layer_pruning.md
    )
    density: float = Field(0.2, ge=0.0, le=1.0)  # magnitude/dare: fraction of each task vector kept
    scale: float = Field(1.0, ge=0.0)  # magnitude/dare: λ in θ_p ← θ_p + λ·sparsify(τ)
    scale_by_count: bool = False  # magnitude/dare: λ/(k+1) when k removed layers fold into one kept layer
    merge_norms: bool = True  # magnitude/dare: norm weights follow the rule (false: left as they are)
    protect_first_last: bool = True  # never remove the first or the last layer
    calib_samples: int = Field(64, ge=1)  # calibration texts for scoring (and for the linear fit)
    calib_length: int = Field(256, ge=2)  # tokens per calibration text (longer ones are cut)
    batch_size: int = Field(8, ge=1)  # calibration texts per forward pass
    ridge: float = Field(1e-4, ge=0.0)  # linear: ridge strength relative to the mean eigenvalue of MᵀM
    token_weight: Literal["uniform", "inverse_norm"] = "inverse_norm"  # linear: per-token weights of the fit
    fit_on_pruned: bool = True  # linear: fit each block on the model with the blocks below already folded
    refine_steps: int = Field(200, ge=0)  # linear, post-MLP-norm archs (Gemma3): Adam steps through the norm
    refine_lr: float = Field(1e-3, gt=0.0)  # linear: learning rate of those steps
    verify: bool = True  # linear: keep the fold only if calibration loss beats plain removal
    seed: int = Field(0, ge=0)  # which calibration texts are sampled; dare: its Bernoulli masks

    @model_validator(mode="after")
    def _one_amount(self) -> LayerPruneConfig:
        if self.remove is not None and self.fraction is not None:
            raise ValueError("give either remove or fraction, not both")
        if self.layers is not None:
            if self.fraction is not None or (
                self.remove is not None and self.remove != len(set(self.layers))
            ):
                raise ValueError("layers names the layers to remove: leave remove/fraction out")
        return self

    @field_validator("merge")
    @classmethod
    def _known_merge(cls, v: str) -> str:
        if v.lower() not in MERGES:
            raise ValueError(f"unknown merge method '{v}' (known: {', '.join(MERGES.names())})")
        return v.lower()

    def merge_settings(self) -> MergeSettings:
        return MergeSettings(**{k: getattr(self, k) for k in MergeSettings.model_fields})

    def count(self, n_layers: int) -> int:
        """How many layers to remove from an ``n_layers`` model."""
        if self.layers is not None:
            n = len(set(self.layers))
        elif self.remove is not None:
            n = self.remove
        elif self.fraction is not None:
            n = int(round(self.fraction * n_layers))
        else:
            raise DamocError("say how many layers to remove (remove, fraction or layers)")
        if n >= n_layers:
            raise DamocError(f"cannot remove {n} layers: the model has only {n_layers}")
        room = n_layers - (2 if self.protect_first_last else 0)
        if n > room:
            raise DamocError(f"cannot remove {n} of {n_layers} layers with the first and last protected")
        return n


@dataclass
class LayerPruneReport:
    """What :func:`prune_layers` did, serialised as ``damoc_prune.json`` beside the checkpoint."""

    removed: list[int]
    kept: list[int]
    scores: list[float]
    metric: str
    merge: str
    n_before: int
    n_after: int
    params_before: int
    params_after: int
    calib_texts: int
    calib_tokens: int
    score_s: float
    merge_s: float
    merge_targets: dict[int, int] = field(default_factory=dict)
    merge_details: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["merge_targets"] = {str(k): v for k, v in self.merge_targets.items()}
        return out


def _sample_texts(texts: Sequence[str], n: int, seed: int) -> list[str]:
    texts = [t for t in texts if t and t.strip()]
    if len(texts) > n:
        texts = random.Random(seed).sample(texts, n)
    return texts


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def prune_layers(model, tok, texts: Sequence[str], cfg: LayerPruneConfig) -> LayerPruneReport:
    """Score, choose, merge and remove layers of ``model`` IN PLACE; returns what was done."""
    n_before = len(decoder_layers(model))
    n = cfg.count(n_before)
    protected = protected_layers(n_before, cfg.protect_first_last)
    merge_fn = MERGES.get(cfg.merge)
    needs_data = cfg.layers is None or cfg.merge.lower() == "linear"
    batches = []
    if needs_data and n > 0:
        sample = _sample_texts(texts, cfg.calib_samples, cfg.seed)
        if not sample:
            raise DamocError("no calibration text: give a task or text file with some text in it")
        batches = calibration_batches(tok, sample, cfg.calib_length, cfg.batch_size)
    tokens = int(sum(int(m.sum()) for _, m in batches))
    params_before = _n_params(model)
    t0 = time.perf_counter()
    scores: list[float] = []
    if cfg.layers is not None:
        removed = validate_removal(n_before, cfg.layers, protected)
    elif n == 0:
        removed = []
    else:
        block = n if cfg.metric == "angular" else 1
        ls = score_batches(model, batches, cfg.metric, block)
        scores = ls.scores()
        removed = choose_layers(ls, n, cfg.protect_first_last)
    t1 = time.perf_counter()
    info = merge_fn(model, removed, MergeContext(cfg.merge_settings(), batches)) if removed else None
    t2 = time.perf_counter()
    kept = remove_layers(model, removed, protected)
    LOG.info(
        "removed layers %s (%s, merge %s): %d -> %d layers",
        removed,
        cfg.metric,
        cfg.merge,
        n_before,
        len(kept),
    )
    return LayerPruneReport(
        removed=removed,
        kept=kept,
        scores=scores,
        metric=cfg.metric,
        merge=cfg.merge.lower(),
        n_before=n_before,
        n_after=len(kept),
        params_before=params_before,
        params_after=_n_params(model),
        calib_texts=sum(len(ids) for ids, _ in batches),
        calib_tokens=tokens,
        score_s=round(t1 - t0, 3),
        merge_s=round(t2 - t1, 3),
        merge_targets=dict(info.targets) if info else {},
        merge_details=dict(info.details) if info else {},
        config=cfg.model_dump(mode="json"),
    )


def save_pruned(model, tok, out_dir: str | Path, report: LayerPruneReport, overwrite: bool = False) -> Path:
    """Write the pruned model as a Hugging Face checkpoint plus ``damoc_prune.json`` (atomically)."""
    out = Path(out_dir)
    with atomic_output_dir(out, overwrite) as tmp:
        save_model(model, tmp)  # in the source's dtype (damoc.model.arch)
        if tok is not None:
            tok.save_pretrained(tmp)
        write_json_atomic(tmp / RECORD_NAME, report.to_json())
    return out
