from __future__ import annotations

import pytest

from green_callbacks.core.sampler import Sampler, SourceState
from green_callbacks.testing import FakeClock, FakeMeter


def test_interpolates_inside_and_extrapolates_past_the_samples() -> None:
    clock = FakeClock()
    state = SourceState(FakeMeter({"a": 10.0}, clock=clock))
    state.sample()
    clock.advance(1.0)
    state.sample()

    assert state.at(0.5) == (5.0,)
    assert state.at(1.5) == (15.0,)


def test_answers_never_go_down() -> None:
    clock = FakeClock()
    state = SourceState(FakeMeter({"a": 10.0}, clock=clock))
    state.sample()
    clock.advance(1.0)
    state.sample()

    later = state.at(3.0)

    assert state.at(1.0) == later  # asked for an earlier time, gets no less


def test_sampler_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Sampler(lambda: None, 0.0)
