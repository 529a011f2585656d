"""OOM recognition and recovery plans, and the leak trend."""

from __future__ import annotations

import pytest

from green_callbacks.policies import (
    LeakWatch,
    OOMPlanConfig,
    PolicyConfigError,
    is_out_of_memory,
    plan_after_oom,
)

MIB = 2**20


def test_real_torch_out_of_memory_type_is_recognised() -> None:
    torch = pytest.importorskip("torch", reason="needs torch for its OutOfMemoryError type")
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))


@pytest.mark.parametrize(("error", "expected"), [
    (MemoryError(), True),
    (RuntimeError("DefaultCPUAllocator: you tried to allocate 8 GB; out of memory"), True),
    (RuntimeError("shape mismatch"), False),
    (ValueError("out of memory"), False),  # only plain RuntimeErrors are matched by text
])  # fmt: skip
def test_errors_are_told_apart(error: BaseException, expected: bool) -> None:
    assert is_out_of_memory(error) is expected


def test_batch_shrinks_by_the_factor_down_to_the_floor() -> None:
    config = OOMPlanConfig(factor=0.5, min_batch_size=10)
    sizes, plan = [64], plan_after_oom(64, config)
    while plan.retry:
        sizes.append(plan.batch_size)
        plan = plan_after_oom(plan.batch_size, config)

    assert sizes == [64, 32, 16, 10]
    assert "already the floor (min_batch_size=10)" in plan.message


def test_a_steady_climb_is_flagged_with_growth_and_epochs_left() -> None:
    watch = LeakWatch(window=3, min_growth_bytes=10 * MIB)
    trends = [watch.observe(used * MIB, limit_bytes=1000 * MIB) for used in (100, 150, 200)]

    assert not trends[0].leaking and not trends[1].leaking  # not enough epochs yet
    assert trends[2].leaking and trends[2].growth_bytes_per_epoch == pytest.approx(50 * MIB)
    assert trends[2].epochs_left == pytest.approx(16.0)
    assert "50.0 MiB per epoch" in trends[2].message and "about 16 epochs left" in trends[2].message


@pytest.mark.parametrize("usage", [(100, 150, 140, 200), (100, 101, 102, 103)])
def test_noise_and_slow_growth_are_not_flagged(usage: tuple[int, ...]) -> None:
    watch = LeakWatch(window=4, min_growth_bytes=10 * MIB)
    trends = [watch.observe(used * MIB) for used in usage]
    assert not trends[-1].leaking


def test_bad_settings_say_what_to_pass() -> None:
    with pytest.raises(PolicyConfigError, match="factor must be between 0 and 1"):
        OOMPlanConfig(factor=1.0)
    with pytest.raises(PolicyConfigError, match="window must be >= 3"):
        LeakWatch(window=2)


def test_guard_state_records_each_oom_and_gives_up_at_the_floor() -> None:
    from green_callbacks.policies import OOMDriver, OOMFloorError

    state = OOMDriver(OOMPlanConfig(factor=0.5, min_batch_size=16))
    assert state.out_of_memory(64, epoch=2, step=40, checkpoint="/c/oom.ckpt").batch_size == 32
    assert state.out_of_memory(32, epoch=2, step=40).batch_size == 16
    assert not state.out_of_memory(16, epoch=-1, step=0).retry
    first, _, last = state.events
    assert (first.new_batch_size, last.new_batch_size) == (32, None)
    assert "in epoch 2 after step 40; emergency checkpoint /c/oom.ckpt" in first.message
    assert "pre-flight" in last.message
    error = state.floor_error()
    assert isinstance(error, OOMFloorError) and "min_batch_size=16" in str(error)
    assert isinstance(error, MemoryError) and not is_out_of_memory(error)  # never retried again


def test_guard_state_warns_on_a_leak_with_its_figures() -> None:
    from green_callbacks.policies import MemoryLeakWarning, OOMDriver

    state = OOMDriver(OOMPlanConfig(), leak_window=3, min_leak_mib=10)
    with pytest.warns(MemoryLeakWarning, match=r"device memory grew .* 20\.0 MiB per epoch"):
        for used in (100, 120, 140):
            trend = state.memory("device", used * MIB, 200 * MIB)
    assert trend.epochs_left == pytest.approx(3.0)


def test_host_memory_reads_this_process() -> None:
    from green_callbacks.policies import host_memory, host_peak_rss

    used, limit = host_memory()
    assert 0 < used < limit and host_peak_rss() >= used * 0.5
