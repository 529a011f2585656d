"""EnergyEarlyStopping for Lightning: stop when accuracy no longer pays for its joules.

The control flow is :class:`green_callbacks.policies.EarlyStopDriver`'s; this
class feeds it the epoch figures ``EnergyCallback`` logged and applies the
decision. It is a Lightning ``EarlyStopping``, so it runs after the other
callbacks and the module in ``on_train_epoch_end`` and sees the whole epoch's figures.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from green_callbacks.core import keys
from green_callbacks.lightning.callback import energy_callback, to_loggers
from green_callbacks.policies.stop_driver import EnergyEarlyStoppingArgs
from green_callbacks.policies.stopping import StopDecision


class EnergyEarlyStopping(EnergyEarlyStoppingArgs, pl.callbacks.EarlyStopping):
    __doc__ = EnergyEarlyStoppingArgs.__doc__
    FIX = "pass both: Trainer(callbacks=[EnergyCallback(), EnergyEarlyStopping(...)])"

    def _framework_init(self) -> None:
        config = self.stopper.config
        pl.callbacks.EarlyStopping.__init__(
            self, monitor=config.monitor, mode=config.mode, patience=config.patience,
            verbose=self.stopper.verbose, check_on_train_epoch_end=True,
        )  # fmt: skip
        self._best_weights: dict[str, torch.Tensor] | None = None
        self._validated = False

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            energy_callback(trainer, type(self).__name__)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._validated = False

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Decisions are taken at the end of the training epoch, with its energy known."""
        if not trainer.sanity_checking:
            self._validated = True  # energy/val_epoch_j belongs to this epoch

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        figures = {k: float(v) for k, v in trainer.callback_metrics.items()}
        decision = self.stopper.observe(
            figures,
            epochs_left=None if max_epochs is None else max_epochs - trainer.current_epoch - 1,
            at=trainer.current_epoch,
            include_val=self._validated,
        )
        if decision.improved and self.stopper.restore_best_weights:
            self._best_weights = {
                k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()
            }
        if trainer.strategy.reduce_boolean_decision(decision.stop, all=False):
            self._stop(trainer, pl_module, decision)

    def _stop(self, trainer: Any, pl_module: Any, decision: StopDecision) -> None:
        trainer.should_stop = True
        self.stopped_epoch = self.stopper.stopped_at = trainer.current_epoch
        self.stopper.decision = decision
        saved = {keys.STOP_SAVED_ESTIMATE_J: decision.saved_j_estimate}
        pl_module.log_dict(saved, on_epoch=True, sync_dist=trainer.world_size > 1, reduce_fx="max")
        if trainer.is_global_zero:
            to_loggers(trainer, hyperparams={"early_stopping/reason": decision.reason.value})

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.stopper.restore_best_weights and self._best_weights is not None:
            pl_module.load_state_dict(self._best_weights)
