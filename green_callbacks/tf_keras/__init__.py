"""tf_keras (Keras 2) adapter: ``model.fit(..., callbacks=[EnergyCallback()])`` on a
``tf_keras`` model, whose ``fit`` rejects Keras 3 callbacks.

The same arguments, keys, summary and run folder as the Keras 3 callback
(docs/metrics.md); the policy callbacks (early stopping, checkpointing, OOM
guard) are Keras 3's only. Needs ``pip install 'green-callbacks[tfmot]'``.
"""

from green_callbacks.tf_keras.callback import EnergyCallback

__all__ = ["EnergyCallback"]
