"""Compression with its savings measured: pruning, quantization, distillation.

:mod:`~green_callbacks.compress.report` and :mod:`~green_callbacks.compress.measure`
are framework-free; :mod:`~green_callbacks.compress.torch_models` holds the
PyTorch model surgery (import it explicitly: it needs torch).
"""

from green_callbacks.compress.measure import (
    DEFAULT_MEASUREMENT,
    InferenceCost,
    MeasureConfigError,
    Measurement,
    compare_inference,
)
from green_callbacks.compress.report import CompressionReport, ModelFigures, judge

__all__ = [
    "DEFAULT_MEASUREMENT", "CompressionReport", "InferenceCost", "MeasureConfigError",
    "Measurement", "ModelFigures", "compare_inference", "judge",
]  # fmt: skip
