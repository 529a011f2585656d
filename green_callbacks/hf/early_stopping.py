"""EnergyEarlyStopping for ``transformers.Trainer``: stop when accuracy stops paying for its joules.

The decision is :class:`green_callbacks.policies.StoppingPolicy`'s, taken at
each evaluation from the metrics ``EnergyCallback`` added to them (so it must
come before this callback; :func:`green_callbacks.hf.attach` puts it first).
The energy of a period is the growth of ``energy/total_j`` since the previous
evaluation: training and evaluation together.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

from green_callbacks.core import keys
from green_callbacks.errors import EnergyCallbackMissingError
from green_callbacks.policies.stopping import StopDecision, StoppingConfig, StoppingPolicy

log = logging.getLogger(__name__)


class EnergyEarlyStopping(TrainerCallback):
    """Stops on an energy budget, on diminishing returns per kJ, or on a target.

    Same arguments as the Lightning and Keras ``EnergyEarlyStopping``, judged
    once per evaluation (``eval_strategy``) rather than per epoch; ``monitor``
    is a key of the evaluation metrics (``"eval_loss"``, ``"eval_accuracy"``).
    For the best weights, use ``TrainingArguments(load_best_model_at_end=True)``.
    After a stop, :attr:`decision` holds the reason, a message and the energy
    saved against the planned steps (an estimate), which also goes into the
    evaluation's metrics as ``energy/early_stop_saved_estimate_j``.
    """

    def __init__(
        self,
        monitor: str = "eval_loss",
        mode: str = "min",
        *,
        budget_j: float | None = None,
        min_gain_per_kj: float | None = None,
        patience: int = 3,
        target: float | None = None,
        verbose: bool = True,
    ):
        self.config = StoppingConfig(monitor, mode, budget_j, min_gain_per_kj, patience, target)
        self.policy = StoppingPolicy(self.config)
        self.verbose = verbose
        self.decision: StopDecision | None = None
        self._last = (0.0, 0)  # total J and global step at the previous evaluation

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.decision = None
        self._last = (0.0, state.global_step)

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metrics = metrics if metrics is not None else {}
        if keys.TOTAL_J not in metrics:
            raise EnergyCallbackMissingError(
                "EnergyEarlyStopping found no energy figures in the evaluation metrics; pass "
                "green_callbacks.hf.EnergyCallback before it (callbacks=[EnergyCallback(), "
                "EnergyEarlyStopping(...)]) or attach(trainer) it"
            )
        total_j = float(metrics[keys.TOTAL_J])
        last_total, last_step = self._last
        period_steps = state.global_step - last_step
        self._last = (total_j, state.global_step)
        if period_steps <= 0:  # an evaluation outside training
            return
        periods_left = max(state.max_steps - state.global_step, 0) // period_steps
        metric = metrics.get(self.config.monitor)
        decision = self.policy.observe(
            epoch_j=total_j - last_total,
            total_j=total_j,
            metric=None if metric is None else float(metric),
            epochs_left=periods_left if state.max_steps > 0 else None,
        )
        if not decision.stop:
            return
        control.should_training_stop = True
        self.decision = decision
        metrics[keys.STOP_SAVED_ESTIMATE_J] = decision.saved_j_estimate
        if state.log_history:
            state.log_history[-1][keys.STOP_SAVED_ESTIMATE_J] = decision.saved_j_estimate
        if self.verbose:
            log.info(
                "EnergyEarlyStopping stopped at step %d: %s; about %.0f J saved against the "
                "planned steps (estimate)", state.global_step, decision.message,
                decision.saved_j_estimate,
            )  # fmt: skip
