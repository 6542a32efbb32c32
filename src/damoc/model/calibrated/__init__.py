"""Cross-calibrated compression (docs/calibrated.md): Hessian-based pruning and quantization, layer by layer.

Methods (listed in :data:`METHODS`): ``magnitude``, ``wanda``, ``sparsegpt`` (prune) and
``rtn``, ``gptq`` (quantize). The sequential pipeline is :func:`compress_model`; the CLI-level jobs are
:func:`run_prune_calibrated` and :func:`run_quantize`.
"""

from damoc.model.calibrated.config import (
    CalibrationConfig,
    PruneCalibratedJob,
    PruneSpec,
    QuantizeJob,
    QuantSpec,
)
from damoc.model.calibrated.methods import METHODS, LayerResult, QuantPayload

__all__ = [
    "METHODS",
    "CalibrationConfig",
    "LayerResult",
    "PruneCalibratedJob",
    "PruneSpec",
    "QuantPayload",
    "QuantSpec",
    "QuantizeJob",
]
