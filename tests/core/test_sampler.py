from __future__ import annotations

import pytest

from green_callbacks.core.sampler import Model, Sampler, SourceState, interpolated_deltas
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
