"""PyTorch Lightning adapter: ``Trainer(callbacks=[EnergyCallback()])``.

Needs ``pip install 'green-callbacks[lightning]'``.
"""

from green_callbacks.lightning.callback import EnergyCallback, EnergyCallbackMissingError
from green_callbacks.lightning.checkpoint import EnergyCheckpoint
from green_callbacks.lightning.early_stopping import EnergyEarlyStopping

__all__ = [
    "EnergyCallback", "EnergyCallbackMissingError", "EnergyCheckpoint", "EnergyEarlyStopping",
]  # fmt: skip
