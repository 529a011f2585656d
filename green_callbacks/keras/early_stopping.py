"""EnergyEarlyStopping for Keras 3: stop when accuracy no longer pays for its joules.

The control flow is :class:`green_callbacks.policies.EarlyStopDriver`'s; this
class feeds it the epoch figures ``EnergyCallback`` put in ``logs`` (so list
``EnergyCallback`` first) and sets ``model.stop_training``. Its state travels
in ``EnergyCheckpoint``'s backups, so a resumed fit continues its decisions.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras

from green_callbacks.core import keys
from green_callbacks.keras._compat import KERAS3
from green_callbacks.keras._hooks import Flavour, energy_callback
from green_callbacks.policies.stop_driver import EnergyEarlyStoppingArgs

STATE_NAME = "early_stopping"


class EarlyStoppingHooks(EnergyEarlyStoppingArgs):
    """The hooks of every Keras's ``EnergyEarlyStopping``; subclasses add the ``Callback``."""

    __doc__ = EnergyEarlyStoppingArgs.__doc__
    flavour: ClassVar[Flavour]
    model: Any
    params: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "flavour" in cls.__dict__:  # what to add, named for this Keras's EnergyCallback
            cls.FIX = (
                f"list {cls.flavour.package}.EnergyCallback before it: "
                "model.fit(..., callbacks=[EnergyCallback(), EnergyEarlyStopping(...)])"
            )

    def _framework_init(self) -> None:
        super(EnergyEarlyStoppingArgs, self).__init__()  # the framework's Callback, next in line
        self.stopped_epoch = 0
        self._best_weights: list[Any] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.stopper.decision = None
        self._best_weights = None
        energy_callback(self.model, self).register_state(STATE_NAME, self.stopper)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        epochs = self.params.get("epochs") if self.params else None
        decision = self.stopper.observe(
            logs, epochs_left=None if epochs is None else int(epochs) - epoch - 1, at=epoch
        )
        if decision.improved and self.stopper.restore_best_weights:
            self._best_weights = self.model.get_weights()
        # every epoch, 0 J until the stop: CSVLogger fixes its columns at the first epoch
        logs[keys.STOP_SAVED_ESTIMATE_J] = decision.saved_j_estimate if decision.stop else 0.0
        if decision.stop:
            self.model.stop_training = True
            self.stopped_epoch = epoch

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stopper.restore_best_weights and self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class EnergyEarlyStopping(EarlyStoppingHooks, keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = EnergyEarlyStoppingArgs.__doc__
    flavour = KERAS3
