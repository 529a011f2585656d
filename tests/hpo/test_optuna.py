"""Energy per trial and a budget for a study, on a fake 100 W meter and a fake clock."""

from __future__ import annotations

import logging
from typing import Any

import pytest

optuna = pytest.importorskip("optuna", reason="needs the 'optuna' extra")

from green_callbacks.optuna import (  # noqa: E402
    DOMAINS_J,
    DURATION_S,
    ENERGY_J,
    KIND,
    SOURCE,
    EnergyBudget,
    GainStop,
    HPOConfigError,
    metered,
    pareto_front,
    spent_j,
)
from green_callbacks.testing import FakeClock, FakeMeter  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def fake() -> tuple[FakeClock, dict[str, Any]]:
    clock = FakeClock()
    return clock, {"meters": [FakeMeter({"cpu": 100.0}, clock=clock)], "clock": clock,
                   "sample_interval_s": None}  # fmt: skip


def test_every_trial_carries_its_energy_pruned_and_failed_ones_too() -> None:
    clock, options = fake()

    def objective(trial: Any) -> float:
        seconds = [1.0, 2.0, 3.0][trial.number]
        clock.advance(seconds)
        if trial.number == 1:
            raise optuna.TrialPruned()
        if trial.number == 2:
            raise ValueError("the fit diverged")
        return 0.9

    study = optuna.create_study(direction="maximize")
    study.optimize(metered(objective, **options), n_trials=3, catch=(ValueError,))

    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL"]
    assert [t.user_attrs[ENERGY_J] for t in study.trials] == [100.0, 200.0, 300.0]
    assert [t.user_attrs[DURATION_S] for t in study.trials] == [1.0, 2.0, 3.0]
    first = study.trials[0].user_attrs
    assert first[DOMAINS_J] == {"cpu": 100.0} and first[KIND] == "measured"
    assert first[SOURCE] == "tracker"
    assert spent_j(study) == 600.0  # spent is spent, whatever the trial's end


def test_energy_as_a_second_objective_and_the_pareto_front() -> None:
    clock, options = fake()
    costs = {0: (0.90, 5.0), 1: (0.80, 1.0), 2: (0.85, 6.0), 3: (0.95, 9.0)}

    def objective(trial: Any) -> float:
        accuracy, seconds = costs[trial.number]
        clock.advance(seconds)
        return accuracy

    both = optuna.create_study(directions=["maximize", "minimize"])
    both.optimize(metered(objective, energy_objective=True, **options), n_trials=4)
    assert [t.values for t in both.trials][:2] == [[0.90, 500.0], [0.80, 100.0]]
    assert sorted(t.number for t in pareto_front(both)) == [0, 1, 3]

    clock, options = fake()
    single = optuna.create_study(direction="maximize")
    single.optimize(metered(objective, **options), n_trials=4)
    # trial 2 (0.85 for 600 J) is beaten by trial 0 (0.90 for 500 J) on both counts
    assert [t.number for t in pareto_front(single)] == [1, 0, 3]


def test_the_budget_stops_before_the_trial_that_would_overrun(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, options = fake()

    def objective(trial: Any) -> float:
        clock.advance(3.0)  # 300 J a trial
        return 1.0

    budget = EnergyBudget(budget_j=1000.0)
    study = optuna.create_study()
    with caplog.at_level(logging.WARNING, logger="green_callbacks.optuna"):
        study.optimize(metered(objective, **options), n_trials=10, callbacks=[budget])

    assert len(study.trials) == 3 and spent_j(study) == 900.0  # 900 + 300 > 1000: stop
    assert budget.decision is not None and "100 J left" in budget.decision
    assert [r.getMessage() for r in caplog.records] == [budget.decision]


def test_the_budget_counts_the_trials_of_every_process_in_the_storage(tmp_path: Any) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    clock, options = fake()

    def objective(trial: Any) -> float:
        clock.advance(2.0)
        return 1.0

    # another process already ran four 200 J trials in the shared study
    other = optuna.create_study(study_name="shared", storage=storage)
    other.optimize(metered(objective, **options), n_trials=4)
    mine = optuna.load_study(study_name="shared", storage=storage)
    mine.optimize(metered(objective, **options), n_trials=10,
                  callbacks=[EnergyBudget(budget_j=1500.0)])  # fmt: skip

    assert spent_j(mine) == 1400.0 and len(mine.trials) == 7  # 1400 + 200 > 1500


def test_a_fit_with_its_own_energy_callback_is_counted_once() -> None:
    pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
    from green_callbacks.lightning import EnergyCallback
    from green_callbacks.testing import fake_metered

    clock, options = fake()

    def objective(trial: Any) -> float:
        callback, fit_clock = fake_metered(EnergyCallback, power_w=50.0)
        callback._open_session()  # what trainer.fit does in setup
        fit_clock.advance(4.0)  # the fit: 4 s at 50 W by the callback's own meter
        callback._close_session()
        clock.advance(10.0)  # the trial's own meter saw 1000 J around it
        return 1.0

    study = optuna.create_study()
    study.optimize(metered(objective, **options), n_trials=1)
    attrs = study.trials[0].user_attrs
    assert attrs[SOURCE] == "EnergyCallback" and attrs[ENERGY_J] == 200.0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"budget_j": -1.0}, "budget_j must be > 0 J, got -1.0"),
        ({"budget_j": "100"}, "budget_j"),
        ({"budget_j": 10.0, "predict_from": 0}, "predict_from must be a whole number >= 1"),
    ],
)
def test_bad_budgets_name_the_value(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(HPOConfigError, match=message):
        EnergyBudget(**arguments)


def test_an_objective_that_returns_nothing_and_a_budget_without_metering() -> None:
    _, options = fake()
    study = optuna.create_study()
    study.optimize(metered(lambda trial: None, **options), n_trials=1, catch=(HPOConfigError,))
    assert study.trials[0].state.name == "FAIL"
    assert study.trials[0].user_attrs[ENERGY_J] == 0.0  # metered all the same

    plain = optuna.create_study()
    with pytest.raises(HPOConfigError, match="wrap the objective"):
        plain.optimize(lambda trial: 1.0, n_trials=1, callbacks=[EnergyBudget(budget_j=10.0)])


def test_the_pruner_stops_trials_that_gain_too_little_per_kj_and_says_what_it_saved() -> None:
    from green_callbacks.optuna import SAVED_J, STEPS_J, EnergyAwarePruner, gain_per_kj

    clock, options = fake()
    slopes = [0.1, 0.1, 0.1, 0.1, 0.01, 0.2]  # accuracy gained per step (100 J a step)

    def objective(trial: Any) -> float:
        value = 0.0
        for step in range(5):
            clock.advance(1.0)
            value += slopes[trial.number]
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study = optuna.create_study(direction="maximize", pruner=EnergyAwarePruner())
    study.optimize(metered(objective, **options), n_trials=6)

    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 4 + ["PRUNED", "COMPLETE"]
    slow = study.trials[4]
    assert slow.last_step == 1 and slow.user_attrs[STEPS_J] == {"0": 100.0, "1": 200.0}
    # 0.01 gained over 100 J against the others' 0.1: a tenth of their 1.0 per kJ
    assert gain_per_kj(slow, 1, maximize=True) == pytest.approx(0.1)
    assert gain_per_kj(study.trials[0], 1, maximize=True) == pytest.approx(1.0)
    # the complete trials ran to step 4: three more steps at its 100 J a step, not spent
    assert slow.user_attrs[SAVED_J] == pytest.approx(300.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"percentile": 0.0}, "percentile must be between 0 and 100"),
     ({"n_startup_trials": -1}, "n_startup_trials must be a whole number >= 0"),
     ({"n_warmup_steps": 1.5}, "n_warmup_steps")],
)  # fmt: skip
def test_bad_pruner_settings_name_the_value(arguments: dict[str, Any], message: str) -> None:
    from green_callbacks.optuna import EnergyAwarePruner

    with pytest.raises(HPOConfigError, match=message):
        EnergyAwarePruner(**arguments)


def test_a_budget_smaller_than_one_trial_says_so() -> None:
    clock, options = fake()

    def objective(trial: Any) -> float:
        clock.advance(5.0)  # 500 J
        return 1.0

    budget = EnergyBudget(budget_j=100.0)
    study = optuna.create_study()
    study.optimize(metered(objective, **options), n_trials=5, callbacks=[budget])
    assert len(study.trials) == 1
    assert budget.decision is not None and "one trial alone costs more than the whole" in (
        budget.decision
    )


def test_real_lightning_and_keras_fits_are_counted_once_by_their_callbacks() -> None:
    pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
    keras = pytest.importorskip("keras", reason="needs the 'keras' extra")
    import numpy as np
    import torch

    from green_callbacks.keras import EnergyCallback as KerasEnergy
    from green_callbacks.lightning import EnergyCallback as LightningEnergy
    from green_callbacks.lightning.demo import DigitsCNN, digits_loaders

    summaries: list[Any] = []

    def lightning_fit(trial: Any) -> float:
        energy = LightningEnergy(meters="estimate", progress_bar=False)
        trainer = pl.Trainer(
            max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[energy], limit_train_batches=5,
            limit_val_batches=2,
        )  # fmt: skip
        torch.manual_seed(0)
        trainer.fit(DigitsCNN(lr=trial.suggest_float("lr", 1e-3, 1e-2)), *digits_loaders(32, 0))
        summaries.append(energy.summary)
        return float(trainer.callback_metrics["val_acc"])

    def keras_fit(trial: Any) -> float:
        energy = KerasEnergy(meters="estimate", progress_bar=False)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
        model.compile(keras.optimizers.SGD(trial.suggest_float("lr", 1e-3, 1e-2)), "mse")
        history = model.fit(np.ones((64, 8), "float32"), np.ones((64, 2), "float32"),
                            epochs=2, verbose=0, callbacks=[energy])  # fmt: skip
        summaries.append(energy.summary)
        return float(history.history["loss"][-1])

    for fit in (lightning_fit, keras_fit):
        summaries.clear()
        study = optuna.create_study()
        study.optimize(metered(fit, meters="estimate"), n_trials=1)
        attrs = study.trials[0].user_attrs
        assert attrs[SOURCE] == "EnergyCallback" and attrs[KIND] == "estimated"
        assert attrs[ENERGY_J] == pytest.approx(summaries[0]["totals"]["energy_j"])


# accuracy of each trial, 500 J each: it flattens after trial 3
FLATTENING = [0.50, 0.70, 0.80, 0.85, 0.851, 0.852, 0.852, 0.853, 0.90, 0.95]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_gain_stop_ends_the_search_once_the_best_flattens_per_kj(
    caplog: pytest.LogCaptureFixture, direction: str
) -> None:
    clock, options = fake()
    sign = 1.0 if direction == "maximize" else -1.0  # minimize the error: the same search

    def objective(trial: Any) -> float:
        if trial.number == 4:  # a pruned trial's energy counts: it was spent
            clock.advance(5.0)
            raise optuna.TrialPruned()
        clock.advance(5.0)  # 500 J a trial
        return sign * FLATTENING[trial.number]

    stop = GainStop(min_gain_per_kj=0.01, over_trials=3)  # one point per kJ
    study = optuna.create_study(direction=direction)
    with caplog.at_level(logging.WARNING, logger="green_callbacks.optuna"):
        study.optimize(metered(objective, **options), n_trials=10, callbacks=[stop])

    # after trial 3 (0.85 over 0.70: 0.15 in 1.5 kJ) it goes on; after trial 6 the best
    # gained 0.852 - 0.85 = 0.002 over trials 4-6's 1.5 kJ: under 0.01 per kJ
    assert len(study.trials) == 7
    assert stop.decision is not None and "gained 0.002 over the last 3 trials' 1.5 kJ" in (
        stop.decision
    )
    assert [r.getMessage() for r in caplog.records] == [stop.decision]


def test_gain_stop_waits_for_enough_trials_and_needs_their_energy() -> None:
    clock, options = fake()

    def objective(trial: Any) -> float:
        clock.advance(1.0)
        return 0.5  # flat from the start

    stop = GainStop(min_gain_per_kj=0.01, over_trials=4)
    study = optuna.create_study(direction="maximize")
    study.optimize(metered(objective, **options), n_trials=10, callbacks=[stop])
    assert len(study.trials) == 5  # a complete trial before the 4 judged: not before

    bare = optuna.create_study(direction="maximize")
    with pytest.raises(HPOConfigError, match="needs every trial's energy; wrap the objective"):
        bare.optimize(lambda trial: 0.5, n_trials=1, callbacks=[GainStop(0.01)])
    with pytest.raises(HPOConfigError, match="min_gain_per_kj must be >= 0"):
        GainStop(-1.0)
    with pytest.raises(HPOConfigError, match="over_trials must be a whole number >= 1"):
        GainStop(0.01, over_trials=0)
