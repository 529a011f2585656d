from __future__ import annotations

import math
from typing import Any

import pytest

from green_callbacks.core.sampler import (
    MAX_REJECTED_IN_A_ROW,
    Model,
    Sampler,
    SourceState,
    interpolated_deltas,
)
from green_callbacks.errors import EnergySourceWarning, MeterReadError
from green_callbacks.meters.base import Domain, Reading
from green_callbacks.testing import FakeClock, FakeMeter


def sampled_at_0_and_1_s(clock: FakeClock) -> SourceState:
    """A 10 W source sampled at t=0 s and t=1 s."""
    state = SourceState(FakeMeter({"a": 10.0}, clock=clock))
    state.sample()
    clock.advance(1.0)
    state.sample()
    return state


def test_model_interpolates_inside_and_extrapolates_past_the_samples() -> None:
    model = sampled_at_0_and_1_s(FakeClock()).model

    assert model.at(0.5) == (5.0,)
    assert model.at(1.5) == (15.0,)


def test_first_sample_has_no_power_yet() -> None:
    state = SourceState(FakeMeter({"a": 10.0}, clock=FakeClock()))
    state.sample()

    assert state.model.slopes == (0.0,)


def test_windows_under_one_model_are_power_times_time() -> None:
    model = sampled_at_0_and_1_s(FakeClock()).model

    assert interpolated_deltas((1.2, model), (1.45, model)) == pytest.approx((2.5,))


def test_windows_across_models_are_never_negative() -> None:
    clock = FakeClock()
    meter = FakeMeter({"a": 1000.0}, clock=clock)
    state = SourceState(meter)
    state.sample()
    clock.advance(1.0)
    state.sample()
    before = state.model  # extrapolates at 1000 W
    meter.set_power(a=0.0)
    clock.advance(1.0)
    state.sample()  # the load stopped: less energy than extrapolated

    assert interpolated_deltas((1.9, before), (2.0, state.model)) == (0.0,)


def test_concat_keeps_a_single_model_as_is() -> None:
    model = Model((0.0,), (1.0,), (2.0,))

    assert Model.concat([model]) is model
    assert Model.concat([model, model]).values == (1.0, 1.0)


def test_sampler_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Sampler(lambda: None, 0.0)


def test_a_read_right_after_a_sample_keeps_the_power() -> None:
    clock = FakeClock()
    state = sampled_at_0_and_1_s(clock)
    clock.advance(0.001)  # an epoch boundary read just after the sampler's sample

    state.sample()

    assert state.model.slopes == (10.0,)
    assert state.model.anchors == (1.001,)


class ScriptedMeter:
    """Cumulative readings given in advance, one per read (a fake sensor that misbehaves)."""

    name = "scripted"
    max_poll_interval_s = None

    def __init__(self, clock: FakeClock, readings: list[float], domain: str = "cpu:0"):
        self._clock, self._readings, self._domain = clock, list(readings), domain

    def domains(self) -> tuple[Domain, ...]:
        return (Domain(self._domain, "measured", "scripted", "energy-counter"),)

    def read(self) -> Reading:
        return Reading(self._clock(), {self._domain: self._readings.pop(0)})

    def close(self) -> None:
        pass


def read_each_second(readings: list[float], **options: Any) -> tuple[SourceState, list[float]]:
    """Sample a scripted source at 0, 1, 2... s; the values the tracker would see."""
    clock = FakeClock()
    state = SourceState(ScriptedMeter(clock, readings), clock=clock, **options)
    seen = []
    for _ in readings:
        seen.append(state.sample()[1][0])
        clock.advance(1.0)
    return state, seen


@pytest.mark.parametrize(
    ("bad", "why"),
    [(math.nan, "not finite"), (math.inf, "not finite"), (262_143.0, "rose by"), (5.0, "fell by")],
)
def test_an_implausible_reading_is_replaced_by_the_power_before_it(bad: float, why: str) -> None:
    # a 10 W counter: 0, 10, 20, then one impossible reading, then on as before
    readings = [0.0, 10.0, 20.0, bad, 40.0, 50.0]
    if bad in (262_143.0, 5.0):  # a misread counter stays shifted: later reads carry the shift
        readings = [0.0, 10.0, 20.0, bad, bad + 10.0, bad + 20.0]
    notes: list[str] = []
    with pytest.warns(EnergySourceWarning, match=f"implausible reading: .*{why}") as caught:
        state, seen = read_each_second(readings, on_note=notes.append)

    assert seen == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]  # the gap counted at 10 W
    assert len(caught) == 1 and len(notes) == 1 and state.rejected == 1
    assert state.dropped_note is None


def test_a_source_that_only_reads_impossible_values_is_dropped_then_held() -> None:
    readings = [0.0, 10.0, 20.0] + [math.nan] * MAX_REJECTED_IN_A_ROW + [math.nan]
    with pytest.warns(EnergySourceWarning) as caught:
        state, seen = read_each_second(readings)

    assert len(caught) == 2 and "dropped" in str(caught[-1].message)  # one note, one drop
    assert state.dropped_note is not None and "implausible readings in a row" in state.dropped_note
    assert state.domains[0].method == "held-power" and state.domains[0].kind == "estimated"
    assert seen[-1] == 10.0 * (len(readings) - 1)  # held at the 10 W it measured


def test_a_reading_faster_than_the_ceiling_allows_is_implausible() -> None:
    ceiling = Domain("gpu:0", "measured", "x", "y").max_power_w
    assert (ceiling, Domain("cpu:0/core", "measured", "x", "y").max_power_w) == (3000.0, 2000.0)
    assert Domain("node", "replayed", "x", "y").max_power_w == 10000.0
    # 1 s apart plus the 1 s grace for counter steps: up to 2 x 2000 W for a CPU package
    state, seen = read_each_second([0.0, 4000.0])
    assert seen == [0.0, 4000.0] and state.rejected == 0
    with pytest.warns(EnergySourceWarning, match=r"rose by 4000.1 J in 1 s \(ceiling 2000 W\)"):
        state, seen = read_each_second([0.0, 4000.1])
    assert seen == [0.0, 0.0] and state.rejected == 1  # the power before it: none yet


def test_in_strict_mode_an_implausible_reading_raises_and_keeps_raising() -> None:
    state, _ = read_each_second([0.0, math.nan], strict=True)

    for _ in range(2):
        with pytest.raises(MeterReadError, match="strict mode.*not finite"):
            state.raise_if_strict()
