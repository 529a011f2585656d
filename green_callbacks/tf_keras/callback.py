"""EnergyCallback for tf_keras models: the Keras hooks on tf_keras's own ``Callback``."""

from __future__ import annotations

from green_callbacks._docs import with_arguments_of
from green_callbacks._optional import missing_extra
from green_callbacks.core.session import EnergyCallbackArgs
from green_callbacks.keras._hooks import KerasHooks

try:
    import tf_keras
except ImportError as err:  # pragma: no cover - exercised where tf_keras is absent
    raise missing_extra(err, "tfmot", purpose="green_callbacks.tf_keras") from err


@with_arguments_of(EnergyCallbackArgs)
class EnergyCallback(KerasHooks, tf_keras.callbacks.Callback):  # type: ignore[misc]
    """Meters training, validation, evaluation and prediction energy into ``logs``.

    For ``tf_keras`` (Keras 2) models, as ``green_callbacks.keras.EnergyCallback``
    is for Keras 3: the same hooks, keys and figures; list it first so the
    callbacks after it (``CSVLogger``, ``TensorBoard``, ``EarlyStopping``) see the
    figures. TensorFlow runs its own device synchronisation at epoch ends.
    """
