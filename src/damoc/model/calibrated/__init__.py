"""Cross-calibrated compression (SPEC section 7): Hessian-based pruning and quantization, layer by layer.

Methods (registered in :data:`METHODS` on import): ``magnitude``, ``wanda``, ``sparsegpt`` (prune) and
``rtn``, ``gptq`` (quantize). The sequential pipeline is :func:`compress_model`; the CLI-level jobs are
:func:`run_prune_calibrated` and :func:`run_quantize`.
"""

from damoc.model.calibrated import gptq, magnitude, quant, sparsegpt, wanda  # noqa: F401  (register methods)
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
