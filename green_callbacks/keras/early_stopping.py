"""EnergyEarlyStopping for Keras 3: stop when accuracy no longer pays for its joules.

The decision is :class:`green_callbacks.policies.StoppingPolicy`'s; this class
feeds it the epoch figures ``EnergyCallback`` put in ``logs`` (so list
``EnergyCallback`` first) and sets ``model.stop_training``.
"""

from __future__ import annotations

import logging
from typing import Any

import keras

from green_callbacks.core import keys
from green_callbacks.errors import EnergyCallbackMissingError
from green_callbacks.policies.stopping import StopDecision, StoppingConfig, StoppingPolicy

log = logging.getLogger(__name__)


class EnergyEarlyStopping(keras.callbacks.Callback):  # type: ignore[misc]
    """Stops on an energy budget, on diminishing returns per kJ, or on a target.

    Same arguments and decisions as the Lightning ``EnergyEarlyStopping``
    (docs/policies.md). After a stop, :attr:`decision` holds the reason, a
    message and the energy saved against the planned epochs (an estimate),
    which also goes into the epoch's ``logs`` as
    ``energy/early_stop_saved_estimate_j``; :attr:`stopped_epoch` the epoch.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        *,
        budget_j: float | None = None,
        min_gain_per_kj: float | None = None,
        patience: int = 3,
        target: float | None = None,
        restore_best_weights: bool = False,
        verbose: bool = True,
    ):
        super().__init__()
        self.config = StoppingConfig(monitor, mode, budget_j, min_gain_per_kj, patience, target)
        self.policy = StoppingPolicy(self.config)
        self.restore_best_weights = restore_best_weights
        self.verbose = verbose
        self.decision: StopDecision | None = None
        self.stopped_epoch = 0
        self._best_weights: list[Any] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.decision = None
        self._best_weights = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        if keys.TOTAL_J not in logs:
            raise EnergyCallbackMissingError(
                "EnergyEarlyStopping found no energy figures in the epoch's logs; list "
                "green_callbacks.keras.EnergyCallback before it: "
                "model.fit(..., callbacks=[EnergyCallback(), EnergyEarlyStopping(...)])"
            )
        metric = logs.get(self.config.monitor)
        epochs = self.params.get("epochs") if self.params else None
        decision = self.policy.observe(
            epoch_j=float(logs[keys.epoch_j("train")]) + float(logs.get(keys.epoch_j("val"), 0.0)),
            total_j=float(logs[keys.TOTAL_J]),
            metric=None if metric is None else float(metric),
            epochs_left=None if epochs is None else int(epochs) - epoch - 1,
        )
        if decision.improved and self.restore_best_weights:
            self._best_weights = self.model.get_weights()
        if not decision.stop:
            return
        self.model.stop_training = True
        self.stopped_epoch = epoch
        self.decision = decision
        logs[keys.STOP_SAVED_ESTIMATE_J] = decision.saved_j_estimate
        if self.verbose:
            log.info(
                "EnergyEarlyStopping stopped after epoch %d: %s; about %.0f J saved against the "
                "planned epochs (estimate)", epoch, decision.message, decision.saved_j_estimate,
            )  # fmt: skip

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            self.model.set_weights(self._best_weights)

    def state_dict(self) -> dict[str, Any]:
        """The policy's state, to continue the same decisions after a resume."""
        return {"policy": self.policy.state_dict(), "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.policy.load_state_dict(state_dict.get("policy", {}))
        self.stopped_epoch = int(state_dict.get("stopped_epoch", 0))
