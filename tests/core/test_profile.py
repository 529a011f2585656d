"""StepProfile: which steps it profiles, what it counts, and that it never stays installed."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import CodeType

import pytest

from green_callbacks.core.profile import StepProfile, is_user_code
from green_callbacks.core.session import CallbackConfig, EnergySession
from green_callbacks.testing import FakeClock, FakeMeter

np = pytest.importorskip("numpy")


def looped(batch: np.ndarray) -> list[float]:
    return [row.sum() for row in batch]  # two calls a row from this line: sum, and its Python


def batched(batch: np.ndarray) -> float:
    return float(batch.sum())


def user(code: CodeType) -> bool:
    return code.co_name in ("looped", "batched", "<listcomp>")


LOOP_LINE = f"{__file__}:{looped.__code__.co_firstlineno + 1}"


def profile_steps(profile: StepProfile, step: object, count: int) -> list[dict | None]:
    found = []
    for _ in range(count):
        profile.step_start()
        step(np.ones((16, 4)))  # type: ignore[operator]
        found.append(profile.step_end(16))
    return found


def test_it_profiles_the_steps_after_the_warm_up_and_reports_once() -> None:
    profile = StepProfile(steps=2, skip=3, is_user=user)
    found = profile_steps(profile, looped, 7)

    assert found[:4] == [None] * 4  # 3 skipped, then the first profiled step
    facts = found[4]
    assert facts is not None and facts["profile_steps"] == 2
    assert facts["line_calls_per_sample"] == 2.0 and facts["busiest_line"] == LOOP_LINE
    assert 0.0 <= facts["python_time_share"] <= 1.0 and facts["profile_overhead_s"] > 0
    assert found[5:] == [None, None] and sys.getprofile() is None


def test_a_batched_step_calls_far_less_than_once_a_sample() -> None:
    [facts] = [f for f in profile_steps(StepProfile(1, 0, is_user=user), batched, 1)]
    assert facts is not None and facts["line_calls_per_sample"] == 2 / 16  # one .sum() a step


def test_only_code_the_user_entered_during_the_step_counts() -> None:
    # The test function itself is on the stack (entered before the step): it is not counted,
    # so a library's work called from here is not the user's.
    profile = StepProfile(steps=1, skip=0, is_user=lambda code: code.co_name.startswith("test_"))
    profile.step_start()
    for row in np.ones((16, 4)):
        row.sum()  # called from a frame the step did not enter
    facts = profile.step_end(16)
    assert facts is not None and facts["line_calls_per_sample"] == 0.0


def test_batches_of_one_step_are_profiled_together() -> None:
    profile = StepProfile(steps=1, skip=0, is_user=user)
    profile.step_start()
    looped(np.ones((16, 4)))
    profile.step_start()  # the next batch of the same step (gradient accumulation)
    looped(np.ones((16, 4)))
    facts = profile.step_end(32)
    assert facts is not None and facts["profile_steps"] == 1
    assert facts["line_calls_per_sample"] == 2.0


def test_another_profiler_is_left_alone() -> None:
    def theirs(frame: object, event: str, arg: object) -> None:
        pass

    sys.setprofile(theirs)
    try:
        profile = StepProfile(steps=1, skip=0, is_user=user)
        profile.step_start()
        assert sys.getprofile() is theirs
        assert profile.step_end(16) is None
    finally:
        sys.setprofile(None)


def test_a_cancelled_profile_takes_itself_off_its_thread() -> None:
    profile = StepProfile(steps=1, skip=0, is_user=user)
    seen = []

    def training() -> None:  # a step that never ends: the run is closed from elsewhere
        profile.step_start()
        cancelled.wait()
        looped(np.ones((2, 2)))  # the next events uninstall it
        seen.append(sys.getprofile())

    cancelled = threading.Event()
    thread = threading.Thread(target=training)
    thread.start()
    profile.cancel()
    cancelled.set()
    thread.join()
    assert seen == [None] and not profile.running


def test_user_code_is_what_no_library_holds() -> None:
    assert is_user_code(looped.__code__)  # this test file
    assert not is_user_code(threading.Thread.run.__code__)  # the standard library
    assert not is_user_code(pytest.approx.__code__)  # an installed package
    assert not is_user_code(StepProfile.step_start.__code__)  # green_callbacks
    assert is_user_code(compile("x = 1", "<ipython-input-3>", "exec"))  # a notebook cell
    assert not is_user_code(compile("x = 1", "<frozen importlib._bootstrap>", "exec"))


def session(**config: object) -> EnergySession:
    clock = FakeClock()
    return EnergySession(
        CallbackConfig(meters=FakeMeter({"gpu:0": 100.0}, clock=clock), **config),  # type: ignore[arg-type]
        clock=clock, sleep=clock.sleep, sample_interval_s=None,
    )  # fmt: skip


def test_a_session_profiles_only_when_it_writes_a_summary(tmp_path: Path) -> None:
    for path, profiled in ((None, False), (tmp_path / "summary.json", True)):
        run = session(summary_path=path).start()
        run.epoch_start("train")
        for _ in range(10):
            run.batch_start("train")
            looped(np.ones((8, 2)))
            run.batch_end("train", 8)
        run.epoch_end("train")
        facts = run.stop()["facts"]
        assert ("python_time_share" in facts) is profiled
        if profiled:
            assert facts["profile_steps"] == 3 and facts["line_calls_per_sample"] == 2.0


def test_a_session_stopped_mid_step_leaves_no_profiler(tmp_path: Path) -> None:
    run = session(summary_path=tmp_path / "summary.json").start()
    run.epoch_start("train")
    for step in range(6):  # the sixth step is the first profiled, and never ends
        run.batch_start("train")
        if step < 5:
            run.batch_end("train", 8)
    facts = run.stop()["facts"]
    looped(np.ones((2, 2)))
    assert sys.getprofile() is None and "python_time_share" not in facts
