"""EnergyEarlyStopping for Lightning: stop when accuracy no longer pays for its joules.

The decision is :class:`green_callbacks.policies.StoppingPolicy`'s; this class
feeds it the epoch figures ``EnergyCallback`` logged and applies the decision.
It is a Lightning ``EarlyStopping``, so it runs after the other callbacks and
the module in ``on_train_epoch_end`` and sees the whole epoch's figures.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch

from green_callbacks.core import keys
from green_callbacks.lightning.callback import energy_callback
from green_callbacks.policies.stopping import StopDecision, StoppingConfig, StoppingPolicy

log = logging.getLogger(__name__)


class EnergyEarlyStopping(pl.callbacks.EarlyStopping):
    """Stops on an energy budget, on diminishing returns per kJ, or on a target.

    Args:
        monitor: the metric to watch, as logged (e.g. ``"val_acc"``).
        mode: ``"max"`` if higher is better, ``"min"`` if lower is.
        budget_j: never start an epoch predicted to overrun this. Units: J.
        min_gain_per_kj: stop when the best ``monitor`` improved less than this
            per kJ over the last ``patience`` epochs.
        patience: epochs the gain per kJ is measured over.
        target: stop as soon as ``monitor`` reaches this.
        restore_best_weights: load the weights of the best epoch when training ends.
        verbose: log the decision at INFO level (it is always in :attr:`decision`).

    After a stop, :attr:`decision` holds the reason, a message and the energy
    saved against the planned epochs (an estimate), which is also logged as
    ``energy/early_stop_saved_estimate_j``.
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
        config = StoppingConfig(monitor, mode, budget_j, min_gain_per_kj, patience, target)
        super().__init__(
            monitor=monitor, mode=mode, patience=patience, verbose=verbose,
            check_on_train_epoch_end=True,
        )  # fmt: skip
        self.config = config
        self.policy = StoppingPolicy(config)
        self.restore_best_weights = restore_best_weights
        self.decision: StopDecision | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            energy_callback(trainer, type(self).__name__)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Decisions are taken at the end of the training epoch, with its energy known."""

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        figures = trainer.callback_metrics
        metric = figures.get(self.monitor)
        epoch_j = float(figures[keys.epoch_j("train")]) + float(
            figures.get(keys.epoch_j("val"), 0.0)
        )
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        decision = self.policy.observe(
            epoch_j=epoch_j,
            total_j=float(figures[keys.TOTAL_J]),
            metric=None if metric is None else float(metric),
            epochs_left=None if max_epochs is None else max_epochs - trainer.current_epoch - 1,
        )
        if decision.improved and self.restore_best_weights:
            self._best_weights = {
                k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()
            }
        if trainer.strategy.reduce_boolean_decision(decision.stop, all=False):
            self._stop(trainer, pl_module, decision)

    def _stop(self, trainer: Any, pl_module: Any, decision: StopDecision) -> None:
        trainer.should_stop = True
        self.stopped_epoch = trainer.current_epoch
        self.decision = decision
        saved = {keys.STOP_SAVED_ESTIMATE_J: decision.saved_j_estimate}
        pl_module.log_dict(saved, on_epoch=True, sync_dist=trainer.world_size > 1, reduce_fx="max")
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_hyperparams({"early_stopping/reason": decision.reason.value})
            if self.verbose:
                log.info(
                    "EnergyEarlyStopping stopped after epoch %d: %s; about %.0f J saved "
                    "against the planned epochs (estimate)",
                    trainer.current_epoch, decision.message, decision.saved_j_estimate,
                )  # fmt: skip

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            pl_module.load_state_dict(self._best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.policy.load_state_dict(state_dict.get("policy", {}))
        self.stopped_epoch = int(state_dict.get("stopped_epoch", 0))
