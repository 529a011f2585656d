"""PyTorch Lightning adapter: ``Trainer(callbacks=[EnergyCallback()])``.

Needs ``pip install 'green-callbacks[lightning]'``.
"""

from green_callbacks.errors import EnergyCallbackMissingError
from green_callbacks.lightning.callback import EnergyCallback
from green_callbacks.lightning.checkpoint import EnergyCheckpoint
from green_callbacks.lightning.distillation import Distillation
from green_callbacks.lightning.early_stopping import EnergyEarlyStopping
from green_callbacks.lightning.oom_guard import OOMGuard
from green_callbacks.lightning.pruning import StructuredPruning

__all__ = [
    "Distillation", "EnergyCallback", "EnergyCallbackMissingError", "EnergyCheckpoint",
    "EnergyEarlyStopping", "OOMGuard", "StructuredPruning",
]  # fmt: skip
