"""YAML job configs of the model level: ``job: prune-layers``."""

from __future__ import annotations

from typing import Literal

from damoc.config import JobConfig
from damoc.hardware import HardwareSettings
from damoc.model.layer_pruning import LayerPruneConfig


class PruneLayersJob(JobConfig, HardwareSettings, LayerPruneConfig):
    """``damoc prune layers`` as a YAML job: the model, the calibration data, the output, and the prune settings.

    Sample YAML (``examples/prune_layers.yaml``; docs/layer_pruning.md)::

        job: prune-layers
        model: smollm2-135m
        data: pubmedqa
        out: runs/smollm2-135m-pruned
        fraction: 0.25
        merge: linear

    Fields:
        model: the model to prune: a zoo name, a Hugging Face hub id or a local Hugging Face directory
        data: calibration text: a task file, a built-in task or a .txt file
        out: the output directory (a loadable Hugging Face checkpoint plus damoc_prune.json)
        overwrite: replace a non-empty output directory
        (device, dtype: where the model runs and in which dtype, HardwareSettings; every other field: the
        layer-pruning settings of LayerPruneConfig)
    """

    job: Literal["prune-layers"] = "prune-layers"
    model: str
    data: str
    out: str
    overwrite: bool = False

    def prune_config(self) -> LayerPruneConfig:
        return LayerPruneConfig(**{k: getattr(self, k) for k in LayerPruneConfig.model_fields})
