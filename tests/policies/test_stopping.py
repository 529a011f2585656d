"""StoppingPolicy: budget, diminishing returns per kJ, target; pure numbers."""

from __future__ import annotations

import pytest

from green_callbacks.policies import (
    PolicyConfigError,
    StoppingConfig,
    StoppingPolicy,
    StopReason,
)


def run(
    policy: StoppingPolicy, epochs: list[tuple[float, float]], planned: int
) -> list[StopReason]:
    """Feed (epoch_j, metric) pairs until a stop; returns each epoch's reason."""
    reasons, total = [], 0.0
    for done, (epoch_j, metric) in enumerate(epochs, start=1):
        total += epoch_j
        decision = policy.observe(epoch_j, total, metric, planned - done)
        reasons.append(decision.reason)
        if decision.stop:
            break
    return reasons


def test_budget_stops_before_an_epoch_that_would_overrun() -> None:
    policy = StoppingPolicy(StoppingConfig(budget_j=1000.0))
    reasons = run(policy, [(300.0, 0.0)] * 10, planned=10)

    # 3 epochs = 900 J; a 4th (300 J) would make 1200 J > 1000 J.
    assert reasons == [StopReason.NONE, StopReason.NONE, StopReason.BUDGET]


def test_budget_prediction_takes_the_most_expensive_recent_epoch() -> None:
    policy = StoppingPolicy(StoppingConfig(budget_j=950.0, cost_window=2))
    policy.observe(100.0, 100.0, None, 5)
    policy.observe(400.0, 500.0, None, 4)
    decision = policy.observe(100.0, 600.0, None, 3)

    assert policy.predicted_epoch_j() == 400.0  # not the mean: the budget must hold
    assert decision.reason is StopReason.BUDGET and "600 J of the 950 J budget" in decision.message
    assert decision.saved_j_estimate == pytest.approx(3 * 400.0)


def test_diminishing_returns_stops_when_gain_per_kj_falls_below_threshold() -> None:
    policy = StoppingPolicy(
        StoppingConfig(monitor="val_acc", mode="max", min_gain_per_kj=0.01, patience=2)
    )
    accuracies = [0.50, 0.70, 0.80, 0.805, 0.806, 0.807]
    reasons = run(policy, [(1000.0, a) for a in accuracies], planned=10)

    # epoch 3: +0.30 over 2 kJ; epoch 4: +0.105 / 2 kJ; epoch 5: +0.006 / 2 kJ = 0.003 < 0.01
    assert reasons[-1] is StopReason.DIMINISHING_RETURNS and len(reasons) == 5
    assert policy.best == 0.806


def test_diminishing_returns_on_a_loss_counts_decreases_as_gains() -> None:
    policy = StoppingPolicy(StoppingConfig(monitor="val_loss", min_gain_per_kj=0.05, patience=1))
    reasons = run(policy, [(500.0, 1.0), (500.0, 0.5), (500.0, 0.49)], planned=5)

    assert reasons == [StopReason.NONE, StopReason.NONE, StopReason.DIMINISHING_RETURNS]


@pytest.mark.parametrize(("mode", "values", "stops_at"), [
    ("max", [0.5, 0.8, 0.95, 0.99], 3),
    ("min", [1.0, 0.4, 0.09, 0.05], 3),
])  # fmt: skip
def test_target_stops_as_soon_as_it_is_reached(
    mode: str, values: list[float], stops_at: int
) -> None:
    target = 0.9 if mode == "max" else 0.1
    policy = StoppingPolicy(StoppingConfig(monitor="m", mode=mode, target=target))
    reasons = run(policy, [(10.0, v) for v in values], planned=10)

    assert len(reasons) == stops_at and reasons[-1] is StopReason.TARGET_REACHED


def test_improved_flags_each_new_best() -> None:
    policy = StoppingPolicy(StoppingConfig(monitor="val_acc", mode="max", target=2.0))
    flags = [policy.observe(1.0, 1.0, v, None).improved for v in (0.5, 0.4, 0.6, float("nan"))]

    assert flags == [True, False, True, False]


def test_state_round_trip_continues_the_history() -> None:
    config = StoppingConfig(monitor="val_acc", mode="max", min_gain_per_kj=0.01, patience=2)
    first = StoppingPolicy(config)
    run(first, [(1000.0, 0.5), (1000.0, 0.8)], planned=10)

    resumed = StoppingPolicy(config)
    resumed.load_state_dict(first.state_dict())
    decision = resumed.observe(1000.0, 3000.0, 0.801, 7)

    assert decision.reason is StopReason.NONE  # 0.301 over 2 kJ, from the carried history
    assert resumed.observe(1000.0, 4000.0, 0.802, 6).reason is StopReason.DIMINISHING_RETURNS


def test_a_missing_monitored_metric_is_a_clear_error() -> None:
    policy = StoppingPolicy(StoppingConfig(monitor="val_acc", mode="max", target=0.9))
    with pytest.raises(PolicyConfigError, match="'val_acc' was not logged"):
        policy.observe(1.0, 1.0, None, None)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "at least one stopping criterion"),
    ({"budget_j": 0.0}, "budget_j must be a positive"),
    ({"target": 1.0, "mode": "up"}, "mode must be 'min' or 'max'"),
    ({"min_gain_per_kj": 0.1, "patience": 0}, "patience must be >= 1"),
])  # fmt: skip
def test_bad_configuration_says_what_to_pass(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(PolicyConfigError, match=match):
        StoppingConfig(**kwargs)  # type: ignore[arg-type]
