"""YAML job configs of the model level: ``job: prune-layers``."""

from __future__ import annotations

from typing import Literal

from damoc.config import JOBS, JobConfig
from damoc.hardware import HardwareSettings
from damoc.model.layer_pruning import LayerPruneConfig


@JOBS.register(
    "prune-layers", help="remove layers (block influence / angular) and merge them into the kept ones"
)
class PruneLayersJob(JobConfig, HardwareSettings, LayerPruneConfig):
    """``damoc prune layers`` as a YAML job: the model, the calibration data, the output, and the prune settings."""

    job: Literal["prune-layers"] = "prune-layers"
    model: str
    data: str
    out: str
    overwrite: bool = False

    def prune_config(self) -> LayerPruneConfig:
        return LayerPruneConfig(**{k: getattr(self, k) for k in LayerPruneConfig.model_fields})
