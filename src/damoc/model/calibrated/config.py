"""Configs for cross-calibrated compression: calibration sources, prune and quantize specs, YAML jobs.

Every number the papers leave open is a field here with its default (docs/calibrated.md; arXiv 2502.18424):
α = 0.5, 128-column OBS blocks, damping 1% of mean diag(H), GPTQ group size 128.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from damoc.config import JobConfig, StrictModel
from damoc.hardware import HardwareSettings

SUPPORTED_BITS = (2, 3, 4, 8)
GENERAL_DEFAULT = "general"  # the bundled SQuAD v1.1 dev paragraphs (resources/general)


class CalibrationConfig(StrictModel):
    """Where calibration text comes from and how much of it is used."""

    general: str | None = Field(
        GENERAL_DEFAULT,
        description="General text: 'general' (bundled), a built-in task name, a task file or a .txt file; "
        "null for none.",
    )
    domain: str | None = Field(
        None, description="Domain text: a built-in task name, a task file or a .txt file."
    )
    alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the domain Hessian: (1-α) H_gen + α H_dom."
    )
    samples: int = Field(32, ge=1, description="Calibration sequences per source.")
    length: int = Field(256, ge=8, description="Tokens per calibration sequence.")
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass through a block.")
    seed: int = Field(0, ge=0, description="Shuffles texts before they are packed into sequences.")
    dev_size: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="Fraction of each source held out for evaluation (never calibrated on).",
    )
    val_size: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Fraction of each source's calibration part held out for validation (choosing α): "
        "neither calibrated nor evaluated on; 0 = none.",
    )

    @model_validator(mode="after")
    def _needs_a_source(self) -> CalibrationConfig:
        if not self.general and not self.domain:
            raise ValueError("give at least one calibration source (general or domain)")
        if self.alpha == 1.0 and not self.domain:
            raise ValueError("alpha=1 calibrates on domain text only, but no domain text was given")
        if self.alpha == 0.0 and not self.general:
            raise ValueError("alpha=0 calibrates on general text only, but no general text was given")
        return self


def parse_pattern(pattern: str | None) -> tuple[int, int] | None:
    """``"2:4"`` → ``(2, 4)``: keep N weights of every M consecutive inputs."""
    if pattern in (None, "", "unstructured"):
        return None
    try:
        n_str, m_str = str(pattern).split(":")
        n, m = int(n_str), int(m_str)
    except ValueError:
        raise ValueError(f"pattern must look like N:M (e.g. 2:4), got '{pattern}'") from None
    if not (0 < n < m):
        raise ValueError(f"pattern N:M needs 0 < N < M, got '{pattern}'")
    return n, m


class PruneSpec(StrictModel):
    """How much to prune and how (unstructured, or N:M along the input dimension)."""

    sparsity: float | None = Field(
        None, ge=0.0, lt=1.0, description="Fraction of weights set to zero per layer (default 0.5)."
    )
    pattern: str | None = Field(None, description="N:M semi-structured pattern, e.g. '2:4' (keep 2 of 4).")
    block_size: int = Field(128, ge=1, description="SparseGPT: columns per lazy OBS update block.")
    damp: float = Field(0.01, gt=0.0, description="SparseGPT: damping as a fraction of mean diag(H).")

    @field_validator("sparsity")
    @classmethod
    def _sparsity_range(cls, v: float | None) -> float | None:
        if v is not None and not (0.0 <= v < 1.0):
            raise ValueError(f"sparsity must be in [0, 1), got {v}")
        return v

    @model_validator(mode="after")
    def _pattern_consistent(self) -> PruneSpec:
        nm = parse_pattern(self.pattern)
        if nm is not None:
            implied = 1.0 - nm[0] / nm[1]
            if self.sparsity is not None and abs(self.sparsity - implied) > 1e-9:
                raise ValueError(
                    f"pattern {self.pattern} means sparsity {implied:g}, but sparsity {self.sparsity:g} was asked"
                )
            if self.block_size % nm[1]:
                raise ValueError(f"block_size {self.block_size} must be a multiple of M={nm[1]}")
        return self

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_pattern(self.pattern)

    @property
    def target(self) -> float:
        nm = self.nm
        if nm is not None:
            return 1.0 - nm[0] / nm[1]
        return 0.5 if self.sparsity is None else self.sparsity


class QuantSpec(StrictModel):
    """Weight-only quantization: asymmetric min-max integers per group of input columns."""

    bits: int = Field(4, description=f"Bits per weight, one of {SUPPORTED_BITS}.")
    group_size: int = Field(128, description="Input columns sharing a scale/zero; 0 or -1 = a whole row.")
    act_order: bool = Field(False, description="GPTQ: quantize columns in order of decreasing diag(H).")
    static_groups: bool = Field(
        False,
        description="GPTQ: each group's scale/zero from the original weights before the sweep (as "
        "llm-compressor does); false: from the error-updated weights when the sweep reaches the group",
    )
    symmetric: bool = Field(
        False,
        description="Symmetric about zero (no zero point: the widest kernel support); false: asymmetric "
        "min-max (a zero point per group: a tighter fit)",
    )
    keep_zeros: bool = Field(
        False,
        description="Weights that are exactly zero before quantization stay zero (quantizing a pruned, "
        "e.g. 2:4, model keeps its mask; GPTQ spreads their error like any other's)",
    )
    block_size: int = Field(128, ge=1, description="GPTQ: columns per lazy update block.")
    damp: float = Field(0.01, gt=0.0, description="GPTQ: damping as a fraction of mean diag(H).")

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: int) -> int:
        if v not in SUPPORTED_BITS:
            raise ValueError(f"unsupported bits {v}: use one of {', '.join(map(str, SUPPORTED_BITS))}")
        return v

    @field_validator("group_size")
    @classmethod
    def _group(cls, v: int) -> int:
        if v < -1:
            raise ValueError(f"group_size must be positive, or 0/-1 for a whole row, got {v}")
        return v

    def group(self, n_in: int) -> int:
        return n_in if self.group_size <= 0 else self.group_size


class PruneCalibratedJob(JobConfig, HardwareSettings):
    """Prune weights with cross-calibration (``damoc prune calibrated``; docs/calibrated.md).

    Sample YAML (``examples/prune_calibrated.yaml``)::

        job: prune-calibrated
        model: smollm2-135m
        out: runs/smollm2-sparsegpt50
        method: sparsegpt
        prune: {sparsity: 0.5}
        calibration: {general: general, domain: pubmedqa, alpha: 0.5}

    Fields:
        model: the model to prune: a zoo name, a Hugging Face hub id or a local Hugging Face directory
        out: the output directory (a loadable Hugging Face checkpoint)
        method: a pruning method: magnitude, wanda or sparsegpt
        prune: how much and how to prune (PruneSpec: sparsity or an N:M pattern)
        calibration: the calibration text and its mix (CalibrationConfig)
        overwrite: replace a non-empty output directory
    """

    job: Literal["prune-calibrated"] = "prune-calibrated"
    model: str
    out: str
    method: str = "sparsegpt"
    prune: PruneSpec = Field(default_factory=PruneSpec)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    overwrite: bool = False


class QuantizeJob(JobConfig, HardwareSettings):
    """Quantize weights with cross-calibration (``damoc quantize``; docs/calibrated.md).

    Sample YAML (``examples/quantize.yaml``)::

        job: quantize
        model: smollm2-135m
        out: runs/smollm2-gptq4
        method: gptq
        quant: {bits: 4, group_size: 128}
        calibration: {general: general, domain: finance}

    Fields:
        model: the model to quantize: a zoo name, a Hugging Face hub id or a local Hugging Face directory
        out: the output directory (a loadable checkpoint in the chosen format, plus damoc_calibrated.json)
        method: a quantization method: gptq or rtn
        quant: bits, group size and GPTQ options (QuantSpec)
        calibration: the calibration text and its mix (CalibrationConfig)
        overwrite: replace a non-empty output directory
    """

    job: Literal["quantize"] = "quantize"
    model: str
    out: str
    method: str = "gptq"
    quant: QuantSpec = Field(default_factory=QuantSpec)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    # compressed-tensors: packed integer weights + quantization_config (vLLM, transformers);
    # dense: the dequantized weights as plain safetensors (any loader, no smaller than the source)
    format: Literal["compressed-tensors", "dense"] = "compressed-tensors"
    overwrite: bool = False
