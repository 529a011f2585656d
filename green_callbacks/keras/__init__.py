"""Keras 3 adapter (any backend): ``model.fit(..., callbacks=[EnergyCallback()])``.

Needs ``pip install 'green-callbacks[keras]'``.
"""

from green_callbacks.keras.callback import EnergyCallback

__all__ = ["EnergyCallback"]
