"""When to save a checkpoint: by energy spent, not by wall-clock or epoch count.

Either every ``every_kj`` kilojoules, or on a planned interval: once a save's
energy has been measured, save every ``cost / max_overhead`` joules, so saving
costs at most ``max_overhead`` of the training energy, capped by
``max_loss_kj``, the most energy a crash may throw away.

Example:
    >>> planner = CheckpointPlanner(CheckpointPlanConfig(max_overhead=0.01))
    >>> planner.decide(since_save_j=500.0, epoch_end=False).save  # no save measured yet
    False
    >>> planner.decide(since_save_j=800.0, epoch_end=True).reason
    <SaveReason.FIRST: 'first'>
    >>> planner.record(cost_j=20.0)                  # that save took 20 J
    >>> planner.interval_j()                         # 20 J is 1 % of 2000 J
    2000.0
    >>> planner.decide(since_save_j=2100.0, epoch_end=False).reason
    <SaveReason.PLANNED: 'planned'>
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from green_callbacks.errors import PolicyConfigError, require_number
from green_callbacks.policies.stopping import J_PER_KJ

COST_HISTORY = 5
"""Saves whose measured energy is averaged to plan the next interval."""


class SaveReason(str, Enum):
    """Why a :class:`CheckpointPlanner` decided to save (``NONE``: not now)."""

    NONE = "none"
    FIRST = "first"
    EVERY_KJ = "every_kj"
    PLANNED = "planned"
    SIGNAL = "signal"


@dataclass(frozen=True)
class SaveDecision:
    """Whether to save now, why, and a sentence for the user.

    Attributes:
        save: save now.
        reason: what triggered it (or ``SaveReason.NONE``).
        message: one sentence for people and logs.
    """

    save: bool
    reason: SaveReason
    message: str = ""


@dataclass(frozen=True)
class CheckpointPlanConfig:
    """How often to save.

    Attributes:
        every_kj: save every this many kJ of training; overrides planning. Units: kJ.
        max_overhead: planned mode: saving may cost at most this fraction of
            the training energy (0.01 is 1 %).
        max_loss_kj: planned mode: never let more than this much energy go
            unsaved, even if saving then costs more than ``max_overhead``. Units: kJ.
    """

    every_kj: float | None = None
    max_overhead: float = 0.01
    max_loss_kj: float | None = None

    def __post_init__(self) -> None:
        for name in ("every_kj", "max_overhead", "max_loss_kj"):
            if getattr(self, name) is not None:
                require_number(name, getattr(self, name), PolicyConfigError)
        if self.every_kj is not None and not self.every_kj > 0:
            raise PolicyConfigError(
                f"every_kj must be a positive number of kJ, got {self.every_kj}"
            )
        if not 0 < self.max_overhead < 1:
            raise PolicyConfigError(
                f"max_overhead must be a fraction between 0 and 1 (0.01 is 1 %), "
                f"got {self.max_overhead}"
            )
        if self.max_loss_kj is not None and not self.max_loss_kj > 0:
            raise PolicyConfigError(
                f"max_loss_kj must be a positive number of kJ, got {self.max_loss_kj}"
            )


class CheckpointPlanner:
    """Decides when to save from the energy spent since the last save.

    Args:
        config: how often to save (``every_kj``, or the planned overhead).
    """

    def __init__(self, config: CheckpointPlanConfig):
        self.config = config
        self._costs: deque[float] = deque(maxlen=COST_HISTORY)
        self.saves = 0
        self.saved_j = 0.0
        """Energy spent saving so far. Units: J."""

    def interval_j(self) -> float | None:
        """Energy between saves; None until a save's cost is known (planned mode). Units: J."""
        config = self.config
        if config.every_kj is not None:
            return config.every_kj * J_PER_KJ
        cap = None if config.max_loss_kj is None else config.max_loss_kj * J_PER_KJ
        if not self._costs:
            return cap
        planned = sum(self._costs) / len(self._costs) / config.max_overhead
        return planned if cap is None else min(planned, cap)

    def decide(self, since_save_j: float, *, epoch_end: bool, signal: str = "") -> SaveDecision:
        """Whether to save now.

        Args:
            since_save_j: training energy since the last save (or the start). Units: J.
            epoch_end: this is the end of an epoch (the first planned save waits for one).
            signal: the name of a signal received since the last check, if any.
        """
        if signal:
            return SaveDecision(True, SaveReason.SIGNAL, f"received {signal}: saving now")
        interval = self.interval_j()
        if interval is None:
            if not epoch_end:
                return SaveDecision(False, SaveReason.NONE)
            return SaveDecision(
                True, SaveReason.FIRST, "first save, at the end of an epoch, to measure its cost"
            )
        if since_save_j < interval:
            return SaveDecision(False, SaveReason.NONE)
        reason = SaveReason.EVERY_KJ if self.config.every_kj is not None else SaveReason.PLANNED
        return SaveDecision(
            True, reason, f"{since_save_j:.6g} J since the last save (interval {interval:.6g} J)"
        )

    def record(self, cost_j: float) -> None:
        """A save happened and took ``cost_j``. Units: J."""
        self._costs.append(cost_j)
        self.saves += 1
        self.saved_j += cost_j

    def overhead(self, training_j: float) -> float:
        """Energy spent saving as a fraction of ``training_j``."""
        return self.saved_j / training_j if training_j > 0 else 0.0

    def state_dict(self, *, saving: bool = False) -> dict[str, Any]:
        """The schedule's state; ``saving``: taken inside a save, which then counts as done.

        A save's own cost is measured only once it is written, so the state a
        checkpoint holds counts that save but not its energy.
        """
        return {
            "costs_j": list(self._costs), "saves": self.saves + int(saving),
            "saved_j": self.saved_j,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._costs.clear()
        self._costs.extend(float(c) for c in state.get("costs_j", []))
        self.saves = int(state.get("saves", 0))
        self.saved_j = float(state.get("saved_j", 0.0))
