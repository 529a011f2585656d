"""EnergyEarlyStopping for ``transformers.Trainer``: stop when accuracy stops paying for its joules.

The control flow is :class:`green_callbacks.policies.EarlyStopDriver`'s, taken
at each evaluation from the metrics ``EnergyCallback`` added to them (so it
must come before this callback; :func:`green_callbacks.hf.attach` puts it
first). The energy of a period is the growth of ``energy/total_j`` since the
previous evaluation (or since ``train()`` began): training and evaluation
together. Its state is saved beside each checkpoint with the energy totals.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from green_callbacks._docs import with_arguments_of
from green_callbacks.core import keys
from green_callbacks.hf.callback import energy_callback
from green_callbacks.policies.stop_driver import EnergyEarlyStoppingArgs

STATE_NAME = "early_stopping"


@with_arguments_of(EnergyEarlyStoppingArgs)
class EnergyEarlyStopping(EnergyEarlyStoppingArgs, TrainerCallback):
    """Stops on an energy budget, on diminishing returns per kJ, or on a target.

    Same arguments as the Lightning and Keras ``EnergyEarlyStopping``
    (:class:`~green_callbacks.policies.EnergyEarlyStoppingArgs`), judged once
    per evaluation (``eval_strategy``) rather than per epoch; ``monitor`` is a
    key of the evaluation metrics (default ``"eval_loss"``).
    ``restore_best_weights`` keeps a copy of the best evaluation's weights on
    the CPU and loads it when training ends (or use ``TrainingArguments(
    load_best_model_at_end=True)``, which reloads from a checkpoint). After a
    stop, :attr:`decision` holds the reason, a message and the energy saved
    against the planned steps (an estimate), which also goes into the
    evaluation's metrics as ``energy/early_stop_saved_estimate_j``.
    """

    DEFAULT_MONITOR = "eval_loss"
    UNIT = "evaluation"
    AT = "at step"
    FIX = (
        "pass green_callbacks.hf.EnergyCallback before it (callbacks=[EnergyCallback(), "
        "EnergyEarlyStopping(...)]) or attach(trainer) it"
    )

    def _framework_init(self) -> None:
        self._last = (0.0, 0)  # total J and global step at the previous evaluation
        self._best_weights: dict[str, Any] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.stopper.decision = None
        self._best_weights = None
        energy = energy_callback(kwargs.get("model"))
        total = 0.0
        if energy is not None and energy.session is not None:
            energy.register_state(STATE_NAME, self.stopper)
            total = energy.session.totals()[keys.TOTAL_J]  # a resumed run's earlier energy
        self._last = (total, state.global_step)

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metrics = metrics if metrics is not None else {}
        last_total, last_step = self._last
        period_steps = state.global_step - last_step
        total_j = float(metrics.get(keys.TOTAL_J, last_total))
        self._last = (total_j, state.global_step)
        if period_steps <= 0:  # an evaluation outside training
            return
        periods_left = max(state.max_steps - state.global_step, 0) // period_steps
        decision = self.stopper.observe(
            metrics, period_j=total_j - last_total, at=state.global_step,
            epochs_left=periods_left if state.max_steps > 0 else None,
        )  # fmt: skip
        model = kwargs.get("model")
        if decision.improved and self.stopper.restore_best_weights and model is not None:
            self._best_weights = {
                k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            }
        if not decision.stop:
            return
        control.should_training_stop = True
        metrics[keys.STOP_SAVED_ESTIMATE_J] = decision.saved_j_estimate
        if state.log_history:
            state.log_history[-1][keys.STOP_SAVED_ESTIMATE_J] = decision.saved_j_estimate

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs.get("model")
        if self._best_weights is not None and model is not None:
            model.load_state_dict(self._best_weights)
