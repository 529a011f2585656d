"""PyTorch Lightning adapter: ``Trainer(callbacks=[EnergyCallback()])``.

Needs ``pip install 'green-callbacks[lightning]'``.
"""

from green_callbacks.errors import EnergyCallbackMissingError
from green_callbacks.lightning.callback import EnergyCallback
from green_callbacks.lightning.checkpoint import EnergyCheckpoint
from green_callbacks.lightning.compression import PostTrainingQuantization, StructuredPruning
from green_callbacks.lightning.distillation import Distillation
from green_callbacks.lightning.early_stopping import EnergyEarlyStopping
from green_callbacks.lightning.oom_guard import OOMGuard

__all__ = [
    "Distillation", "EnergyCallback", "EnergyCallbackMissingError", "EnergyCheckpoint",
    "EnergyEarlyStopping", "OOMGuard", "PostTrainingQuantization", "StructuredPruning",
]  # fmt: skip
