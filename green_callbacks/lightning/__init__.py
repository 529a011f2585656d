"""PyTorch Lightning adapter: ``Trainer(callbacks=[EnergyCallback()])``.

Needs ``pip install 'green-callbacks[lightning]'``.
"""

from green_callbacks.lightning.callback import EnergyCallback

__all__ = ["EnergyCallback"]
