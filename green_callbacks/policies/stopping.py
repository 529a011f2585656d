"""When to stop training for energy: a budget, diminishing returns per kilojoule, a target.

Pure arithmetic on the figures an ``EnergyCallback`` logs each epoch; the
framework adapters feed it and apply its decision.

Example:
    >>> policy = StoppingPolicy(StoppingConfig(monitor="val_acc", mode="max", budget_j=900.0))
    >>> policy.observe(epoch_j=300.0, total_j=300.0, metric=0.80, epochs_left=5).stop
    False
    >>> decision = policy.observe(epoch_j=350.0, total_j=650.0, metric=0.85, epochs_left=4)
    >>> decision.reason, decision.saved_j_estimate   # 650 J spent + 350 J next > 900 J
    (<StopReason.BUDGET: 'budget'>, 1400.0)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from green_callbacks.errors import PolicyConfigError, require_number

J_PER_KJ = 1000.0
MODES = ("min", "max")


class StopReason(str, Enum):
    """Why a :class:`StoppingPolicy` decided what it did."""

    NONE = "none"
    BUDGET = "budget"
    DIMINISHING_RETURNS = "diminishing_returns"
    TARGET_REACHED = "target_reached"


@dataclass(frozen=True)
class StopDecision:
    """The outcome of one epoch's check.

    Attributes:
        stop: whether to stop now.
        reason: why (``NONE`` while training goes on).
        message: one sentence for the user, with the figures behind it.
        improved: the monitored metric improved this epoch (adapters keep the weights).
        saved_j_estimate: planned epochs not run times the predicted epoch
            energy; an estimate, 0 while training goes on. Units: J.
    """

    stop: bool
    reason: StopReason
    message: str
    improved: bool = False
    saved_j_estimate: float = 0.0


@dataclass(frozen=True)
class StoppingConfig:
    """What :class:`StoppingPolicy` watches; set at least one of the three criteria.

    Attributes:
        monitor: the metric key to watch (e.g. ``"val_acc"``).
        mode: ``"max"`` if higher is better, ``"min"`` if lower is.
        budget_j: never start an epoch predicted to overrun this. Units: J.
        min_gain_per_kj: stop when the best metric improved less than this per
            kJ over the last ``patience`` epochs. Units: metric units / kJ.
        patience: epochs the gain per kJ is measured over.
        target: stop as soon as the metric reaches this.
        cost_window: the next epoch's energy is predicted as the most
            expensive of this many latest epochs.
        unit: what one observation is, in messages (``"epoch"``, ``"evaluation"``).
    """

    monitor: str = "val_loss"
    mode: str = "min"
    budget_j: float | None = None
    min_gain_per_kj: float | None = None
    patience: int = 3
    target: float | None = None
    cost_window: int = 3
    unit: str = "epoch"

    def __post_init__(self) -> None:
        for name in ("budget_j", "min_gain_per_kj", "target"):
            if getattr(self, name) is not None:
                require_number(name, getattr(self, name), PolicyConfigError)
        for name in ("patience", "cost_window"):
            require_number(name, getattr(self, name), PolicyConfigError, integer=True)
        if not isinstance(self.monitor, str) or not self.monitor:
            raise PolicyConfigError(
                "monitor must be the name of a logged metric (e.g. 'val_loss'), "
                f"got {self.monitor!r}"
            )
        if self.mode not in MODES:
            raise PolicyConfigError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if self.budget_j is None and self.min_gain_per_kj is None and self.target is None:
            raise PolicyConfigError(
                "set at least one stopping criterion: budget_j (an energy budget in J), "
                "min_gain_per_kj (with patience) or target (a value of the monitored metric)"
            )
        if self.budget_j is not None and not self.budget_j > 0:
            raise PolicyConfigError(f"budget_j must be a positive number of J, got {self.budget_j}")
        if self.min_gain_per_kj is not None and not self.min_gain_per_kj >= 0:
            raise PolicyConfigError(
                f"min_gain_per_kj must be >= 0 (metric gain per kJ), got {self.min_gain_per_kj}"
            )
        for name in ("patience", "cost_window"):
            if getattr(self, name) < 1:
                raise PolicyConfigError(f"{name} must be >= 1 epoch, got {getattr(self, name)}")

    @property
    def needs_metric(self) -> bool:
        return self.min_gain_per_kj is not None or self.target is not None


class StoppingPolicy:
    """Decides, after each epoch, whether training should stop (bounded memory).

    Feed :meth:`observe` once per epoch with that epoch's energy (training
    plus validation), the run's total so far, and the monitored metric.

    Args:
        config: what to stop on (budget, gain per kJ, target) and the metric.
    """

    def __init__(self, config: StoppingConfig):
        self.config = config
        self._costs: deque[float] = deque(maxlen=max(config.cost_window, config.patience))
        self._bests: deque[float] = deque(maxlen=config.patience + 1)
        self.best: float | None = None
        self.epochs = 0

    def observe(
        self, epoch_j: float, total_j: float, metric: float | None, epochs_left: int | None
    ) -> StopDecision:
        """Record one finished epoch and decide.

        Args:
            epoch_j: that epoch's energy, training and validation. Units: J.
            total_j: the run's energy so far (``energy/total_j``). Units: J.
            metric: the monitored value, or None when not logged this epoch.
            epochs_left: planned epochs still to run, if known (for the saving estimate).
        """
        config = self.config
        if metric is None and config.needs_metric:
            raise PolicyConfigError(
                f"the monitored metric {config.monitor!r} was not logged this {config.unit}"
            )
        self.epochs += 1
        self._costs.append(epoch_j)
        improved = metric is not None and not math.isnan(metric) and self._better(metric)
        if improved:
            self.best = metric
        if self.best is not None:
            self._bests.append(self.best)
        decision = self._target(metric) or self._returns() or self._budget(total_j)
        if decision is None:
            return StopDecision(False, StopReason.NONE, "", improved)
        reason, message = decision
        saved = (epochs_left or 0) * self.predicted_epoch_j()
        return StopDecision(True, reason, message, improved, saved)

    def predicted_epoch_j(self) -> float:
        """The next epoch's energy: the most expensive of the latest ``cost_window``. Units: J."""
        latest = list(self._costs)[-self.config.cost_window :]
        return max(latest, default=0.0)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.config.mode == "max" else value < self.best

    def _target(self, metric: float | None) -> tuple[StopReason, str] | None:
        target = self.config.target
        if target is None or metric is None:
            return None
        reached = metric >= target if self.config.mode == "max" else metric <= target
        if not reached:
            return None
        return StopReason.TARGET_REACHED, (
            f"{self.config.monitor} reached {metric:.6g} (target {target:.6g})"
        )

    def _returns(self) -> tuple[StopReason, str] | None:
        threshold, patience = self.config.min_gain_per_kj, self.config.patience
        if threshold is None or len(self._bests) <= patience:
            return None
        gain = self._bests[-1] - self._bests[0]
        if self.config.mode == "min":
            gain = -gain
        spent_kj = sum(list(self._costs)[-patience:]) / J_PER_KJ
        per_kj = gain / spent_kj if spent_kj > 0 else math.inf
        if per_kj >= threshold:
            return None
        return StopReason.DIMINISHING_RETURNS, (
            f"best {self.config.monitor} gained {gain:.6g} over the last {patience} "
            f"{self.config.unit}s "
            f"for {spent_kj:.6g} kJ: {per_kj:.6g} per kJ, below min_gain_per_kj={threshold:.6g}"
        )

    def _budget(self, total_j: float) -> tuple[StopReason, str] | None:
        budget = self.config.budget_j
        if budget is None:
            return None
        upcoming = self.predicted_epoch_j()
        if total_j + upcoming <= budget:
            return None
        return StopReason.BUDGET, (
            f"{total_j:.6g} J of the {budget:.6g} J budget spent; the next {self.config.unit} "
            "would take "
            f"about {upcoming:.6g} J (the most expensive of the latest {self.config.cost_window})"
        )

    # -- resume ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers, so a resumed run keeps its history."""
        return {
            "best": self.best,
            "epochs": self.epochs,
            "costs_j": list(self._costs),
            "bests": list(self._bests),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.epochs = int(state.get("epochs", 0))
        self._costs.clear()
        self._costs.extend(float(c) for c in state.get("costs_j", []))
        self._bests.clear()
        self._bests.extend(float(b) for b in state.get("bests", []))
