"""EnergyCallback for Keras 3: hooks in, session calls, metrics into the shared ``logs`` dict.

Every callback after this one in the list (``CSVLogger``, ``TensorBoard``,
``EarlyStopping``, ``ModelCheckpoint``, MLflow's, the progress bar) reads the
same ``logs`` dict, so list ``EnergyCallback`` first: callbacks before it run
before the figures exist.
"""

from __future__ import annotations

from collections.abc import Callable

from green_callbacks._docs import with_arguments_of
from green_callbacks._optional import missing_extra
from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.loads import watch_keras
from green_callbacks.keras._hooks import KerasHooks

try:
    import keras
except ImportError as err:  # pragma: no cover - exercised where keras is absent
    raise missing_extra(err, "keras", purpose="green_callbacks.keras") from err

watch_keras()  # from now on, whether a model's weights were loaded is known (the advisor's P1)


@with_arguments_of(EnergyCallbackArgs)
class EnergyCallback(KerasHooks, keras.callbacks.Callback):  # type: ignore[misc]
    """Meters training, validation, evaluation and prediction energy into ``logs``.

    Same arguments and metric keys as the Lightning callback (docs/metrics.md).
    Validation figures (``energy/val_epoch_j``...) join the epoch's ``logs``
    (and ``History``); ``evaluate()`` outside ``fit`` puts ``energy/test_j`` in
    the logs the later callbacks receive (Keras builds the dict it returns
    before callbacks run); ``predict()`` has no logs. Every figure is also in
    :attr:`last_metrics` and the summary. Keras gives callbacks no batch size:
    per-sample figures count the batches from the loop's data adapter (arrays,
    ``PyDataset``, a torch ``DataLoader``, the last partial batch included), and
    are left out where it does not know its batch size (a generator, a
    ``tf.data`` dataset of unknown batch size). ``EarlyStopping`` on an energy key
    needs ``mode="min"``.
    """

    # Not async-safe: a batch's end is timed when the hook runs (where its energy window
    # closes and the wait for the next batch's data starts), so it must run on the training
    # thread when the batch ends, not later on Keras's worker thread. (Keras dispatches
    # batch ends to a worker only when every callback is async-safe: with verbose=1 its
    # progress bar already makes them run in line.)
    async_safe = False

    def _synchronizer(self) -> Callable[[], None] | None:
        return _cuda_synchronize()


def _cuda_synchronize() -> Callable[[], None] | None:
    if keras.backend.backend() != "torch":
        return None
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() else None
