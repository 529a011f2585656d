"""Compression with its savings measured: pruning, quantization, distillation.

:mod:`~green_callbacks.compress.report` and :mod:`~green_callbacks.compress.measure`
are framework-free; :mod:`~green_callbacks.compress.torch_models` and
:mod:`~green_callbacks.compress.keras_models` hold the model surgery (import
them explicitly: they need their framework).
"""

from green_callbacks.compress.measure import (
    DEFAULT_MEASUREMENT,
    InferenceCost,
    Measurement,
    compare_inference,
)
from green_callbacks.compress.report import (
    Compressed,
    CompressionCost,
    CompressionReport,
    ModelFigures,
    judge,
)
from green_callbacks.errors import CompressConfigError

__all__ = [
    "DEFAULT_MEASUREMENT", "CompressConfigError", "Compressed", "CompressionCost",
    "CompressionReport",
    "InferenceCost", "Measurement", "ModelFigures", "compare_inference", "judge",
]  # fmt: skip
