"""Keras 3 adapter (any backend): ``model.fit(..., callbacks=[EnergyCallback()])``.

Needs ``pip install 'green-callbacks[keras]'``.
"""

from green_callbacks.keras.callback import EnergyCallback
from green_callbacks.keras.checkpoint import EnergyCheckpoint
from green_callbacks.keras.compression import (
    DistillationReport,
    MagnitudePruning,
    PostTrainingQuantization,
)
from green_callbacks.keras.early_stopping import EnergyEarlyStopping
from green_callbacks.keras.oom_guard import OOMGuard

__all__ = [
    "DistillationReport", "EnergyCallback", "EnergyCheckpoint", "EnergyEarlyStopping",
    "MagnitudePruning", "OOMGuard", "PostTrainingQuantization",
]  # fmt: skip
