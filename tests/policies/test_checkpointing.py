"""CheckpointPlanner: fixed energy intervals, planned intervals bounded by overhead and loss."""

from __future__ import annotations

import pytest

from green_callbacks.policies import (
    CheckpointPlanConfig,
    CheckpointPlanner,
    PolicyConfigError,
    SaveReason,
)


def test_every_kj_saves_each_time_the_interval_is_spent() -> None:
    planner = CheckpointPlanner(CheckpointPlanConfig(every_kj=2.0))

    assert not planner.decide(1999.0, epoch_end=True).save
    decision = planner.decide(2000.0, epoch_end=False)
    assert decision.save and decision.reason is SaveReason.EVERY_KJ


def test_planned_interval_keeps_saving_under_the_overhead() -> None:
    planner = CheckpointPlanner(CheckpointPlanConfig(max_overhead=0.02))
    assert planner.decide(10_000.0, epoch_end=True).reason is SaveReason.FIRST
    planner.record(30.0)
    planner.record(50.0)

    assert planner.interval_j() == pytest.approx(40.0 / 0.02)
    training_j = 0.0
    for _ in range(100):  # simulate: a save each time the planner asks, at 40 J a save
        training_j += 100.0
        if planner.decide(training_j % 2000.0 or 2000.0, epoch_end=False).save:
            planner.record(40.0)
    assert planner.overhead(training_j) <= 0.02 + 80.0 / training_j  # the two first saves aside


def test_max_loss_caps_the_planned_interval() -> None:
    planner = CheckpointPlanner(CheckpointPlanConfig(max_overhead=0.01, max_loss_kj=1.0))
    assert planner.interval_j() == 1000.0  # known before any save: the loss bound
    planner.record(50.0)  # planning alone would wait 5000 J

    assert planner.interval_j() == 1000.0
    assert planner.decide(1000.0, epoch_end=False).reason is SaveReason.PLANNED


def test_a_signal_saves_whatever_the_interval() -> None:
    planner = CheckpointPlanner(CheckpointPlanConfig(every_kj=100.0))
    decision = planner.decide(0.0, epoch_end=False, signal="SIGTERM")

    assert decision.save and decision.reason is SaveReason.SIGNAL and "SIGTERM" in decision.message


def test_state_round_trip_keeps_costs_and_totals() -> None:
    planner = CheckpointPlanner(CheckpointPlanConfig())
    planner.record(12.0)
    resumed = CheckpointPlanner(CheckpointPlanConfig())
    resumed.load_state_dict(planner.state_dict())

    assert resumed.interval_j() == planner.interval_j() == pytest.approx(1200.0)
    assert (resumed.saves, resumed.saved_j) == (1, 12.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"every_kj": -1.0}, "every_kj must be a positive"),
    ({"max_overhead": 1.5}, "between 0 and 1"),
    ({"max_loss_kj": 0.0}, "max_loss_kj must be a positive"),
])  # fmt: skip
def test_bad_configuration_says_what_to_pass(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(PolicyConfigError, match=match):
        CheckpointPlanConfig(**kwargs)


def test_state_taken_inside_a_save_counts_that_save() -> None:
    planner = CheckpointPlanner(CheckpointPlanConfig(every_kj=1.0))
    planner.record(5.0)
    inside = planner.state_dict(saving=True)
    assert (inside["saves"], inside["saved_j"]) == (2, 5.0)  # its own cost is not known yet
    assert planner.state_dict()["saves"] == 1
