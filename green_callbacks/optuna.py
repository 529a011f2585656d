"""Energy-aware hyperparameter search on Optuna: joules per trial and a budget for a study.

- :func:`metered` wraps an objective so that every trial's energy is metered
  and stored as user attributes (``energy_j``, ``energy_domains_j``,
  ``energy_kind``, ``energy_source``, ``duration_s``), pruned and failed trials
  included: their energy was spent. When the trial's own fit has an
  ``EnergyCallback`` (Lightning, Keras, Hugging Face), the callback's total is
  used. With ``energy_objective=True`` the objective also returns the energy,
  for Optuna's multi-objective samplers.
- :class:`EnergyBudget` is a study callback that stops the study before a new
  trial is predicted to take the total over the budget. It counts every trial
  in the study's storage, so several processes sharing one study hold to it
  together (each may overrun by at most the trial it is running).
- :class:`GainStop` is a study callback that stops the study once the best
  value so far gained less than a given amount per kJ over its latest trials
  (accuracy flattens long before energy does).
- :func:`pareto_front` lists the trials no other trial beats on both the
  objective and the energy.
- :class:`EnergyAwarePruner` prunes trials whose metric gains too little per
  kJ against the other trials at the same step.

Needs the ``optuna`` extra. Example, on a fake 100 W meter and a fake clock:

    >>> import optuna
    >>> from green_callbacks.testing import FakeClock, FakeMeter
    >>> clock = FakeClock()
    >>> meter = FakeMeter({"cpu": 100.0}, clock=clock)
    >>> def objective(trial):
    ...     x = trial.suggest_float("x", 0.0, 1.0)
    ...     clock.advance(2.0)                      # a 2 s trial at 100 W
    ...     return x
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study()
    >>> study.optimize(metered(objective, meters=[meter], clock=clock, sample_interval_s=None),
    ...                n_trials=3, callbacks=[EnergyBudget(budget_j=500.0)])
    >>> [t.user_attrs["energy_j"] for t in study.trials]  # stopped: a 4th would pass 500 J
    [200.0, 200.0]
"""

from __future__ import annotations

import contextlib
import functools
import logging
import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from green_callbacks._optional import missing_extra
from green_callbacks.core import callback_args
from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.errors import ConfigError, require_number
from green_callbacks.study.stats import non_dominated

try:
    import optuna
except ImportError as err:  # pragma: no cover - exercised where optuna is absent
    raise missing_extra(err, "optuna", purpose="green_callbacks.optuna") from err

log = logging.getLogger("green_callbacks.optuna")

__all__ = [
    "DOMAINS_J", "DURATION_S", "ENERGY_J", "KIND", "SAVED_J", "SOURCE", "STEPS_J",
    "EnergyAwarePruner", "EnergyBudget", "GainStop", "HPOConfigError", "collected_summaries",
    "gain_per_kj", "metered", "pareto_front", "spent_j",
]  # fmt: skip

ENERGY_J = "energy_j"
"""User attribute: the trial's energy. Units: J."""
DOMAINS_J = "energy_domains_j"
"""User attribute: the trial's energy per domain (``{"cpu": ..., "gpu:0": ...}``). Units: J."""
KIND = "energy_kind"
"""User attribute: ``measured``, ``estimated``, ``replayed`` or ``mixed``."""
SOURCE = "energy_source"
"""User attribute: ``tracker`` (metered around the trial) or ``EnergyCallback`` (its fit's)."""
DURATION_S = "duration_s"
"""User attribute: the trial's wall time. Units: s."""
STEPS_J = "energy_steps_j"
"""User attribute: the trial's energy so far at each reported step (``{"0": J, ...}``). Units: J."""
SAVED_J = "energy_saved_estimate_j"
"""User attribute of a pruned trial: the steps the complete trials ran beyond it, times its
energy per step so far (an estimate of what pruning saved). Units: J."""


class HPOConfigError(ConfigError):
    """A search set up wrongly; the message names the value and the fix."""


def metered(
    objective: Callable[[optuna.Trial], Any],
    *,
    meters: Any = "auto",
    energy_objective: bool = False,
    **tracker_options: Any,
) -> Callable[[optuna.Trial], Any]:
    """``objective`` with each trial's energy metered and stored on the trial.

    Args:
        objective: an Optuna objective (``trial -> value``).
        meters: the energy sources (docs/meters.md).
        energy_objective: also return the trial's energy, as the last objective
            (create the study with one more direction, ``"minimize"``).
        tracker_options: passed to :class:`~green_callbacks.core.tracker.EnergyTracker`
            (tests: a fake ``clock`` and ``sample_interval_s=None``).

    Raises:
        HPOConfigError: the objective returned nothing.
    """

    @functools.wraps(objective)
    def wrapped(trial: optuna.Trial) -> Any:
        tracker = EnergyTracker(meters, **tracker_options).start()
        _report_energy_with_values(trial, tracker)
        with collected_summaries() as summaries:
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                _record_saving(trial)
                raise
            finally:  # every trial keeps its energy, however it ended
                _record(trial, tracker.stop(), summaries)
        if value is None:
            raise HPOConfigError(
                f"the objective {getattr(objective, '__name__', objective)!r} returned nothing; "
                "return the metric to optimise (e.g. the validation accuracy)"
            )
        if not energy_objective:
            return value
        values = tuple(value) if isinstance(value, Sequence) else (value,)
        return (*values, trial.user_attrs[ENERGY_J])

    return wrapped


@contextlib.contextmanager
def collected_summaries() -> Iterator[list[dict[str, Any]]]:
    """Collect the summaries of the ``EnergyCallback`` runs that end inside (this thread)."""
    found: list[dict[str, Any]] = []
    token = callback_args.SUMMARY_SINKS.set((*callback_args.SUMMARY_SINKS.get(), found.append))
    try:
        yield found
    finally:
        callback_args.SUMMARY_SINKS.reset(token)


def _record(trial: optuna.Trial, totals: Any, summaries: list[dict[str, Any]]) -> None:
    """Store the trial's energy: its fits' EnergyCallback totals if any, else the tracker's."""
    if summaries:
        runs = [s["totals"] for s in summaries if s.get("totals")]
        energy = sum(run["energy_j"] for run in runs)
        domains: dict[str, float] = {}
        for run in runs:
            for name, joules in run["domains"].items():
                domains[name] = domains.get(name, 0.0) + joules
        kinds = {run["kind"] for run in runs}
        kind, source = (kinds.pop() if len(kinds) == 1 else "mixed"), "EnergyCallback"
    else:
        energy, domains, kind, source = (
            totals.energy_j, totals.energy_by_domain, totals.kind, "tracker",
        )  # fmt: skip
    trial.set_user_attr(ENERGY_J, energy)
    trial.set_user_attr(DOMAINS_J, domains)
    trial.set_user_attr(KIND, kind)
    trial.set_user_attr(SOURCE, source)
    trial.set_user_attr(DURATION_S, totals.duration_s)


def _report_energy_with_values(trial: optuna.Trial, tracker: EnergyTracker) -> None:
    """Make ``trial.report(value, step)`` also record the trial's energy so far at that step
    (user attribute ``energy_steps_j``), which :class:`EnergyAwarePruner` judges by."""
    report = trial.report

    def report_with_energy(value: float, step: int) -> None:
        steps = dict(trial.user_attrs.get(STEPS_J, {}))
        steps[str(step)] = tracker.totals().energy_j
        trial.set_user_attr(STEPS_J, steps)
        report(value, step)

    trial.report = report_with_energy  # type: ignore[method-assign]


def _record_saving(trial: optuna.Trial) -> None:
    """A pruned trial: estimate the energy pruning saved (the steps the others ran on)."""
    steps = {int(k): float(v) for k, v in trial.user_attrs.get(STEPS_J, {}).items()}
    done = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    last = max((t.last_step for t in done if t.last_step is not None), default=None)
    if not steps or last is None:
        return
    reached = max(steps)
    per_step = steps[reached] / (reached + 1)
    saved = max(last - reached, 0) * per_step
    trial.set_user_attr(SAVED_J, saved)
    log.info("trial %d pruned at step %d: about %.4g J saved (an estimate)", trial.number,
             reached, saved)  # fmt: skip


def spent_j(study: optuna.Study) -> float:
    """Energy of every trial recorded in the study's storage (any process). Units: J.

    Args:
        study: the study.
    """
    return sum(float(t.user_attrs.get(ENERGY_J, 0.0)) for t in study.get_trials(deepcopy=False))


class EnergyBudget:
    """A study callback: stop before a new trial would take the study over ``budget_j``.

    Args:
        budget_j: the most energy the whole study may use. Units: J.
        predict_from: the next trial's energy is the mean of this many most
            recent trials (of any process) with an energy.

    After each trial it adds up the energy of every trial in the study's
    storage; when that plus the predicted next trial exceeds the budget, it
    calls ``study.stop()`` and logs why (WARNING, logger
    ``green_callbacks.optuna``). :attr:`decision` keeps the sentence.
    """

    def __init__(self, budget_j: float, *, predict_from: int = 3):
        require_number("budget_j", budget_j, HPOConfigError)
        if budget_j <= 0:
            raise HPOConfigError(f"budget_j must be > 0 J, got {budget_j!r}")
        require_number("predict_from", predict_from, HPOConfigError, integer=True)
        if predict_from < 1:
            raise HPOConfigError(f"predict_from must be a whole number >= 1, got {predict_from!r}")
        self.budget_j = float(budget_j)
        self.predict_from = predict_from
        self.decision: str | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        energies = [float(t.user_attrs[ENERGY_J]) for t in trials if ENERGY_J in t.user_attrs]
        if not energies:
            raise HPOConfigError(
                "EnergyBudget found no trial energy in the study; wrap the objective: "
                "study.optimize(metered(objective), callbacks=[EnergyBudget(...)])"
            )
        spent = sum(energies)
        recent = sorted(  # the latest trials, whichever process ran them
            (t for t in trials if ENERGY_J in t.user_attrs), key=lambda t: t.number
        )[-self.predict_from :]
        predicted = statistics.fmean(float(t.user_attrs[ENERGY_J]) for t in recent)
        if spent + predicted > self.budget_j:
            self.decision = (
                f"EnergyBudget stopped the study after {len(energies)} trials: {spent:.4g} J of "
                f"the {self.budget_j:.4g} J budget spent, {self.budget_j - spent:.4g} J left, "
                f"and the next trial is predicted to take {predicted:.4g} J"
            )
            if len(energies) == 1 and spent > self.budget_j:
                self.decision += (
                    "; one trial alone costs more than the whole budget: raise budget_j (or "
                    "make trials cheaper) for a search to happen"
                )
            log.warning(self.decision)
            study.stop()


class GainStop:
    """A study callback: stop once the best value so far gains less than ``min_gain_per_kj``.

    Args:
        min_gain_per_kj: the least improvement of the best value (in the study's
            direction, in the objective's units) per kJ spent that keeps the
            search going, e.g. 0.01 for one accuracy point per kJ.
        over_trials: the improvement is judged over the energy of this many latest
            trials (of any process), against the best value before them.

    After each trial, with at least ``over_trials`` trials after the first complete
    one: the best value now against the best before the latest ``over_trials``
    trials (by number), over those trials' energy (pruned and failed ones
    included: it was spent). Below ``min_gain_per_kj`` it calls ``study.stop()``
    and logs why (WARNING, logger ``green_callbacks.optuna``); :attr:`decision`
    keeps the sentence. Single-objective studies; the objective must be
    :func:`metered`.
    """

    def __init__(self, min_gain_per_kj: float, *, over_trials: int = 5):
        require_number("min_gain_per_kj", min_gain_per_kj, HPOConfigError)
        if min_gain_per_kj < 0:
            raise HPOConfigError(f"min_gain_per_kj must be >= 0, got {min_gain_per_kj!r}")
        require_number("over_trials", over_trials, HPOConfigError, integer=True)
        if over_trials < 1:
            raise HPOConfigError(f"over_trials must be a whole number >= 1, got {over_trials!r}")
        self.min_gain_per_kj = float(min_gain_per_kj)
        self.over_trials = over_trials
        self.decision: str | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(study.directions) != 1:
            raise HPOConfigError(
                "GainStop judges one objective's best value; this study has "
                f"{len(study.directions)} directions: use it on a single-objective study"
            )
        trials = sorted(
            (t for t in study.get_trials(deepcopy=False) if t.state.is_finished()),
            key=lambda t: t.number,
        )
        if any(ENERGY_J not in t.user_attrs for t in trials):
            raise HPOConfigError(
                "GainStop needs every trial's energy; wrap the objective: "
                "study.optimize(metered(objective), callbacks=[GainStop(...)])"
            )
        earlier, latest = trials[: -self.over_trials], trials[-self.over_trials :]
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        before = _best(earlier, maximize)
        if len(latest) < self.over_trials or before is None:
            return  # too few trials to judge yet
        now = _best(trials, maximize)
        assert now is not None  # the earlier trials' best is among them
        gained = now - before if maximize else before - now
        spent_kj = sum(float(t.user_attrs[ENERGY_J]) for t in latest) / 1000.0
        if spent_kj <= 0 or gained / spent_kj >= self.min_gain_per_kj:
            return
        self.decision = (
            f"GainStop stopped the study after {len(trials)} trials: the best value gained "
            f"{gained:.4g} over the last {len(latest)} trials' {spent_kj:.4g} kJ "
            f"({gained / spent_kj:.4g} per kJ, under the {self.min_gain_per_kj:.4g} asked for)"
        )
        log.warning(self.decision)
        study.stop()


def _best(trials: Sequence[optuna.trial.FrozenTrial], maximize: bool) -> float | None:
    """The best value of the complete ones among ``trials``, or None if none is complete."""
    values = [
        float(t.value)
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    ]
    if not values:
        return None
    return max(values) if maximize else min(values)


def pareto_front(
    study: optuna.Study, *, maximize: bool | None = None
) -> list[optuna.trial.FrozenTrial]:
    """The complete trials no other trial beats on both the objective and the energy.

    Args:
        study: a single-objective study whose trials were :func:`metered`
            (a multi-objective study: its own ``best_trials``).
        maximize: whether the objective is maximised (default: the study's direction).
    """
    if len(study.directions) > 1:
        return list(study.best_trials)
    if maximize is None:
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    sign = -1.0 if maximize else 1.0
    points = [
        (sign * float(t.value), float(t.user_attrs[ENERGY_J]), t)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.value is not None and ENERGY_J in t.user_attrs
    ]  # fmt: skip
    on_front = non_dominated([(energy, value) for value, energy, _ in points])
    front = [t for (_, _, t), on in zip(points, on_front) if on]
    return sorted(front, key=lambda t: float(t.user_attrs[ENERGY_J]))


class EnergyAwarePruner(optuna.pruners.BasePruner):
    """Prune a trial whose metric gained too little per kJ, against the other trials at that step.

    Args:
        percentile: prune when the trial's gain per kJ is below this
            percentile of the other trials' gains at the same step (50: the median).
        n_startup_trials: judge only once this many other trials reached the step.
        n_warmup_steps: never prune before this step.

    The gain of a trial at step ``s`` is how much its reported value improved
    since its first report (in the study's direction), per kJ spent since
    then. It needs the energy at each step, which :func:`metered` records when
    the objective calls ``trial.report(value, step)``. A pruned trial gets
    ``energy_saved_estimate_j``: the steps the complete trials ran beyond it,
    at its energy per step so far (an estimate).
    """

    def __init__(
        self, percentile: float = 50.0, *, n_startup_trials: int = 4, n_warmup_steps: int = 1
    ):
        require_number("percentile", percentile, HPOConfigError)
        if not 0.0 < percentile < 100.0:
            raise HPOConfigError(f"percentile must be between 0 and 100, got {percentile!r}")
        for name, value in (("n_startup_trials", n_startup_trials),
                            ("n_warmup_steps", n_warmup_steps)):  # fmt: skip
            require_number(name, value, HPOConfigError, integer=True)
            if value < 0:
                raise HPOConfigError(f"{name} must be a whole number >= 0, got {value!r}")
        self.percentile = float(percentile)
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        mine = gain_per_kj(trial, step, maximize)
        if mine is None:
            return False
        others = [
            gain for t in study.get_trials(deepcopy=False)
            if t.number != trial.number and (gain := gain_per_kj(t, step, maximize)) is not None
        ]  # fmt: skip
        if len(others) < max(self.n_startup_trials, 2):
            return False
        threshold = statistics.quantiles(others, n=100, method="inclusive")[
            max(round(self.percentile) - 1, 0)
        ]
        return mine < threshold


def gain_per_kj(trial: optuna.trial.FrozenTrial, step: int, maximize: bool) -> float | None:
    """How much ``trial`` improved from its first report to ``step``, per kJ spent in between.

    None when the trial has no report or energy at ``step``, or spent nothing since its first.

    Args:
        trial: a trial whose objective was :func:`metered` and called ``trial.report``.
        step: the step compared.
        maximize: the study's direction (improvement is an increase).
    """
    energies = {int(k): float(v) for k, v in trial.user_attrs.get(STEPS_J, {}).items()}
    values = trial.intermediate_values
    if step not in values or step not in energies or not values:
        return None
    first = min(values)
    if first not in energies or energies[step] <= energies[first]:
        return None
    gained = values[step] - values[first]
    return (gained if maximize else -gained) / ((energies[step] - energies[first]) / 1000.0)
