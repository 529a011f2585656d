"""The control flow of every framework's ``EnergyEarlyStopping``, without the framework.

:class:`EarlyStopDriver` reads one epoch's (or evaluation period's) figures as
an ``EnergyCallback`` logged them, feeds :class:`StoppingPolicy`, announces a
stop once at WARNING level (default logging shows it), and holds the state a
resumed run continues. :class:`EnergyEarlyStoppingArgs` is the one
constructor the Lightning, Keras and Hugging Face classes share.

Example:
    >>> driver = EarlyStopDriver(StoppingConfig("val_acc", "max", budget_j=900.0))
    >>> figures = {"energy/train_epoch_j": 300.0, "energy/total_j": 300.0, "val_acc": 0.8}
    >>> driver.observe(figures, epochs_left=5, at=0).stop
    False
    >>> figures = {"energy/train_epoch_j": 350.0, "energy/total_j": 650.0, "val_acc": 0.85}
    >>> driver.observe(figures, epochs_left=4, at=1).reason.value   # 650 + 350 > 900 J
    'budget'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from green_callbacks.core import keys
from green_callbacks.errors import EnergyCallbackMissingError, MonitorMissingError
from green_callbacks.policies.stopping import StopDecision, StoppingConfig, StoppingPolicy

log = logging.getLogger("green_callbacks.early_stopping")
STATE_VERSION = 1


class EarlyStopDriver:
    """Decides from logged figures, announces the decision, and keeps the state to resume.

    Args:
        config: what to watch and when to stop.
        restore_best_weights: the adapter keeps the best epoch's weights.
        verbose: announce a stop at WARNING level (it is always in :attr:`decision`).
        fix: what to pass when no energy figures are found, in the framework's words.
        at: how the stop message places the stop (``"after epoch"``, ``"at step"``).
    """

    def __init__(
        self,
        config: StoppingConfig,
        *,
        restore_best_weights: bool = False,
        verbose: bool = True,
        fix: str = "list an EnergyCallback before EnergyEarlyStopping",
        at: str = "after epoch",
    ):
        self.config = config
        self.policy = StoppingPolicy(config)
        self.restore_best_weights = restore_best_weights
        self.verbose = verbose
        self.unit = config.unit
        self.fix = fix
        self.at = at
        self.decision: StopDecision | None = None
        self.stopped_at = 0

    def observe(
        self,
        figures: Mapping[str, Any],
        *,
        epochs_left: int | None,
        at: int,
        period_j: float | None = None,
        include_val: bool = True,
    ) -> StopDecision:
        """Judge one finished epoch (or period) from the figures logged for it.

        Args:
            figures: the epoch's logged metrics: ``energy/total_j``, the monitored
                metric, and ``energy/train_epoch_j`` (plus ``energy/val_epoch_j``).
            epochs_left: planned epochs (or periods) still to run, if known.
            at: the epoch or step, for the stop message.
            period_j: the period's energy when it is not an epoch's figures (the
                growth of the total between evaluations). Units: J.
            include_val: whether ``energy/val_epoch_j`` belongs to this epoch
                (False when validation did not run and the figure is stale).
        """
        if keys.TOTAL_J not in figures:
            raise EnergyCallbackMissingError(
                f"EnergyEarlyStopping found no energy figures ({keys.TOTAL_J}) in the "
                f"{self.unit}'s metrics; {self.fix}"
            )
        if period_j is None:
            period_j = float(figures.get(keys.epoch_j("train"), 0.0))
            if include_val:
                period_j += float(figures.get(keys.epoch_j("val"), 0.0))
        metric = figures.get(self.config.monitor)
        if metric is None and self.config.needs_metric:
            logged = ", ".join(sorted(k for k in figures if not k.startswith("energy")))
            raise MonitorMissingError(
                f"EnergyEarlyStopping watches {self.config.monitor!r}, which was not logged "
                f"this {self.unit}; logged: {logged or 'none'}; pass monitor= one of them"
            )
        decision = self.policy.observe(
            epoch_j=period_j,
            total_j=float(figures[keys.TOTAL_J]),
            metric=None if metric is None else float(metric),
            epochs_left=epochs_left,
        )
        held = [k for k in figures if k.endswith("_held_j")]
        if decision.stop:
            self.decision, self.stopped_at = decision, at
            if self.verbose:
                log.warning(
                    "EnergyEarlyStopping stopped %s %d: %s; about %.0f J saved against the "
                    "planned %ss (an estimate)%s",
                    self.at, at, decision.message, decision.saved_j_estimate, self.unit,
                    f"; an energy source had failed, so part of the energy is estimated "
                    f"({', '.join(held)})" if held else "",
                )  # fmt: skip
        return decision

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers: the policy's history and where it stopped."""
        return {
            "version": STATE_VERSION, "policy": self.policy.state_dict(),
            "stopped_epoch": self.stopped_at,
        }  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(dict(state.get("policy", {})))
        self.stopped_at = int(state.get("stopped_epoch", 0))


class EnergyEarlyStoppingArgs:
    """The constructor every framework's ``EnergyEarlyStopping`` inherits: one signature.

    Args:
        monitor: the metric to watch, as logged (default: the framework's
            validation loss, ``val_loss`` or ``eval_loss``).
        mode: ``"max"`` if higher is better, ``"min"`` if lower is.
        budget_j: never start an epoch predicted to overrun this. Units: J.
        min_gain_per_kj: stop when the best ``monitor`` improved less than this
            per kJ over the last ``patience`` epochs. Units: metric units / kJ.
        patience: epochs (or evaluations) the gain per kJ is measured over.
        target: stop as soon as ``monitor`` reaches this.
        restore_best_weights: load the weights of the best epoch when training ends.
        verbose: announce a stop at WARNING level (it is always in :attr:`decision`).

    After a stop, :attr:`decision` holds the reason, a message and the energy
    saved against the planned epochs (an estimate), which is also logged as
    ``energy/early_stop_saved_estimate_j``.
    """

    DEFAULT_MONITOR = "val_loss"
    UNIT = "epoch"
    AT = "after epoch"
    FIX = "list an EnergyCallback before EnergyEarlyStopping"

    def __init__(
        self,
        monitor: str | None = None,
        mode: str = "min",
        *,
        budget_j: float | None = None,
        min_gain_per_kj: float | None = None,
        patience: int = 3,
        target: float | None = None,
        restore_best_weights: bool = False,
        verbose: bool = True,
    ):
        config = StoppingConfig(
            monitor or self.DEFAULT_MONITOR, mode, budget_j, min_gain_per_kj, patience, target,
            unit=self.UNIT,
        )  # fmt: skip
        self.stopper = EarlyStopDriver(
            config, restore_best_weights=restore_best_weights, verbose=verbose,
            fix=self.FIX, at=self.AT,
        )  # fmt: skip
        self._framework_init()

    def _framework_init(self) -> None:
        """The framework base class's own ``__init__``, with the shared figures."""

    @property
    def config(self) -> StoppingConfig:
        return self.stopper.config

    @property
    def policy(self) -> StoppingPolicy:
        return self.stopper.policy

    @property
    def decision(self) -> StopDecision | None:
        return self.stopper.decision

    def state_dict(self) -> dict[str, Any]:
        """The policy's state, to continue the same decisions after a resume."""
        return self.stopper.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stopper.load_state_dict(state_dict)
