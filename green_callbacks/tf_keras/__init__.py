"""tf_keras (Keras 2) adapter: ``model.fit(..., callbacks=[EnergyCallback()])`` on a
``tf_keras`` model, whose ``fit`` rejects Keras 3 callbacks.

The same arguments, keys, summary and run folder as the Keras 3 callbacks
(docs/metrics.md), and the same policy callbacks: ``EnergyEarlyStopping``,
``EnergyCheckpoint`` (its backups are TensorFlow checkpoints) and ``OOMGuard``.
Needs ``pip install 'green-callbacks[tfmot]'``.
"""

from green_callbacks.tf_keras.callback import EnergyCallback
from green_callbacks.tf_keras.policies import EnergyCheckpoint, EnergyEarlyStopping, OOMGuard

__all__ = ["EnergyCallback", "EnergyCheckpoint", "EnergyEarlyStopping", "OOMGuard"]
