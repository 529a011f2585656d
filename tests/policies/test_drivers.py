"""The drivers every framework's policy callbacks share, tested without any framework.

Energy comes from a FakeMeter (100 W) on a FakeClock: 100 J per second advanced.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from pathlib import Path

import pytest

from green_callbacks.core import keys
from green_callbacks.core.session import CallbackConfig, EnergySession
from green_callbacks.errors import (
    EnergyCallbackMissingError,
    EnergySourceWarning,
    MonitorMissingError,
    OOMFloorError,
    PolicyConfigError,
    SignalNameError,
    UsageError,
)
from green_callbacks.policies import (
    CheckpointPlanConfig,
    EarlyStopDriver,
    OOMDriver,
    OOMPlanConfig,
    SaveReason,
    SaveSchedule,
    StoppingConfig,
    StopReason,
    keep_newest,
)
from green_callbacks.testing import FakeClock, FakeMeter


def session() -> tuple[EnergySession, FakeClock]:
    clock = FakeClock()
    config = CallbackConfig(meters=[FakeMeter({"gpu:0": 100.0}, clock=clock)])
    running = EnergySession(config, clock=clock, sample_interval_s=None).start()
    clock.advance(1.0)
    running.tracker.poll()  # the first sample: the sampler thread's job in a real run
    return running, clock


# -- SaveSchedule ------------------------------------------------------------


def test_schedule_saves_every_kj_and_measures_each_save() -> None:
    running, clock = session()
    schedule = SaveSchedule(CheckpointPlanConfig(every_kj=0.3), signals=())
    schedule.start(running)
    saves = []
    for _ in range(8):  # 8 batches of 100 J
        clock.advance(1.0)
        decision = schedule.check(epoch_end=False)
        if decision.save:
            saves.append(schedule.save(decision, write=lambda: clock.advance(0.25)))
    schedule.stop()

    assert saves == [25.0, 25.0]  # at 300 J and 600 J of training (saves not counted)
    assert schedule.planner.saves == 2 and schedule.planner.saved_j == 50.0
    assert schedule.since_j() == 200.0
    assert schedule.last_decision is not None
    assert schedule.last_decision.reason is SaveReason.EVERY_KJ


def test_after_a_sensor_fails_saves_and_stops_go_on_with_its_held_power() -> None:
    clock = FakeClock()
    failing = FakeMeter({"gpu:0": 100.0}, clock=clock, fail_after=4)
    config = CallbackConfig(meters=[failing])
    running = EnergySession(config, clock=clock, sample_interval_s=None).start()
    schedule = SaveSchedule(CheckpointPlanConfig(every_kj=0.3), signals=())
    schedule.start(running)
    stopper = EarlyStopDriver(StoppingConfig(budget_j=1000.0), verbose=False)
    saves, stopped_at = 0, None
    with pytest.warns(EnergySourceWarning, match="dropped"):
        for epoch in range(10):
            running.epoch_start("train")
            clock.advance(2.0)  # 200 J per epoch at 100 W
            running.tracker.poll()
            decision = schedule.check(epoch_end=True)
            if decision.save:
                saves += schedule.save(decision, write=lambda: None) is not None
            if stopper.observe(running.epoch_end("train"), epochs_left=9 - epoch, at=epoch).stop:
                stopped_at = epoch
                break
    schedule.stop()

    # the sensor died in the first epoch; without the held power: no saves, no stop
    assert failing.reads == 4
    assert (saves, stopped_at) == (2, 4)  # saved at 400 J and 800 J; 1000 J + 200 J > budget


def test_schedule_state_written_inside_a_save_counts_that_save() -> None:
    running, clock = session()
    schedule = SaveSchedule(CheckpointPlanConfig(every_kj=0.1), signals=())
    schedule.start(running)
    clock.advance(2.0)
    written = []
    schedule.save(schedule.check(epoch_end=False), lambda: written.append(schedule.state_dict()))

    assert written[0]["saves"] == 1 and schedule.state_dict()["saves"] == 1


def test_schedule_latches_a_signal_and_gives_the_handler_back() -> None:
    running, _ = session()
    schedule = SaveSchedule(CheckpointPlanConfig(), signals="SIGUSR1")  # one name is a list of one
    schedule.start(running)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert schedule.check(epoch_end=True).reason is SaveReason.FIRST  # signals wait for a batch
    decision = schedule.check(epoch_end=False)
    schedule.stop()

    assert decision.reason is SaveReason.SIGNAL and schedule.signalled
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_schedule_agrees_across_processes() -> None:
    running, _ = session()
    schedule = SaveSchedule(CheckpointPlanConfig(every_kj=100.0), signals=())
    schedule.start(running)
    decision = schedule.check(epoch_end=False, agree=lambda mine: True)  # another rank's signal
    schedule.stop()
    assert decision.reason is SaveReason.SIGNAL and schedule.signalled


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"keep_last": 0}, PolicyConfigError, "keep_last must be a whole number"),
        ({"keep_last": 1.5}, PolicyConfigError, "keep_last must be a whole number"),
        ({"signals": ("SIGKILL",)}, SignalNameError, "SIGKILL cannot be caught"),
        ({"signals": ("SIGNOPE",)}, SignalNameError, "unknown signal 'SIGNOPE'"),
    ],
)
def test_schedule_arguments_are_checked_when_built(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        SaveSchedule(CheckpointPlanConfig(), **kwargs)  # type: ignore[arg-type]


def test_schedule_outside_a_fit_says_so() -> None:
    with pytest.raises(UsageError, match="outside a metered fit"):
        SaveSchedule(CheckpointPlanConfig()).since_j()


def test_keep_newest_orders_by_number_not_by_name(tmp_path: Path) -> None:
    for step in (9, 10, 100, 11):
        (tmp_path / f"energy-epoch=0-step={step}.ckpt").write_text("")
    (tmp_path / "last.ckpt").write_text("")
    kept = keep_newest(tmp_path, re.compile(r"^energy-epoch=\d+-step=(\d+)\.ckpt$"), 2)

    names = [p.name for p in kept]
    assert names == ["energy-epoch=0-step=11.ckpt", "energy-epoch=0-step=100.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, "last.ckpt"])


# -- EarlyStopDriver ---------------------------------------------------------


def figures(epoch_j: float, total_j: float, acc: float, val_j: float = 0.0) -> dict[str, float]:
    return {
        keys.epoch_j("train"): epoch_j, keys.epoch_j("val"): val_j, keys.TOTAL_J: total_j,
        "val_acc": acc,
    }  # fmt: skip


def test_stop_is_announced_once_at_warning_level(caplog: pytest.LogCaptureFixture) -> None:
    driver = EarlyStopDriver(StoppingConfig("val_acc", "max", budget_j=1000.0))
    with caplog.at_level(logging.WARNING, logger="green_callbacks"):
        assert not driver.observe(figures(300, 400, 0.5, val_j=100), epochs_left=8, at=0).stop
        decision = driver.observe(figures(300, 800, 0.6, val_j=100), epochs_left=7, at=1)

    # epochs cost 400 J with validation: 800 + 400 > 1000 J
    assert decision.reason is StopReason.BUDGET and decision.saved_j_estimate == 7 * 400.0
    assert driver.decision is decision and driver.stopped_at == 1
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "stopped after epoch 1" in record.getMessage()


def test_a_stale_validation_figure_is_not_counted_again() -> None:
    driver = EarlyStopDriver(StoppingConfig("val_acc", "max", budget_j=1000.0), verbose=False)
    driver.observe(figures(300, 400, 0.5, val_j=100), epochs_left=8, at=0)
    driver.observe(figures(300, 700, 0.5, val_j=100), epochs_left=7, at=1, include_val=False)

    assert driver.policy.state_dict()["costs_j"] == [400.0, 300.0]


def test_a_missing_monitor_lists_what_was_logged() -> None:
    driver = EarlyStopDriver(StoppingConfig("val_accuracy", "max", target=0.9))
    with pytest.raises(MonitorMissingError, match=r"'val_accuracy'.*logged: val_acc; pass monitor"):
        driver.observe(figures(300, 300, 0.5), epochs_left=None, at=0)


def test_no_energy_figures_names_the_fix() -> None:
    driver = EarlyStopDriver(StoppingConfig(budget_j=1.0), fix="add EnergyCallback() first")
    with pytest.raises(EnergyCallbackMissingError, match="add EnergyCallback"):
        driver.observe({"val_loss": 1.0}, epochs_left=None, at=0)


def test_driver_state_resumes_the_same_decisions() -> None:
    config = StoppingConfig("val_acc", "max", min_gain_per_kj=0.05, patience=2)
    first = EarlyStopDriver(config, verbose=False)
    for epoch, acc in enumerate((0.5, 0.8, 0.85)):
        first.observe(figures(400, 400 * (epoch + 1), acc), epochs_left=None, at=epoch)
    resumed = EarlyStopDriver(config, verbose=False)
    resumed.load_state_dict(first.state_dict())

    # best 0.8 -> 0.85 over the last two epochs: 0.0625 per kJ, on; then no gain: stop
    for driver in (first, resumed):
        assert not driver.observe(figures(400, 1600, 0.8), epochs_left=None, at=3).stop
        assert driver.observe(figures(400, 2000, 0.8), epochs_left=None, at=4).stop
    assert resumed.state_dict()["version"] == 1


# -- OOMDriver ---------------------------------------------------------------


def test_training_runs_again_after_each_oom_and_gives_up_at_the_floor(tmp_path: Path) -> None:
    driver = OOMDriver(OOMPlanConfig(factor=0.5, min_batch_size=4))
    size = [16]

    def train() -> str:
        if size[0] > 4:
            raise MemoryError(f"batch {size[0]}")
        return "done"

    def recover(error: BaseException) -> None:
        saved = driver.emergency_save(tmp_path / "oom.ckpt", lambda part: part.write_text("w"))
        size[0] = driver.next_batch_size(size[0], error, epoch=1, step=6, checkpoint=saved)

    assert driver.run(train, recover) == "done" and size[0] == 4
    assert [(e.batch_size, e.new_batch_size) for e in driver.events] == [(16, 8), (8, 4)]
    assert (tmp_path / "oom.ckpt").read_text() == "w"

    size[0] = 8
    always = OOMDriver(OOMPlanConfig(factor=0.5, min_batch_size=8))
    with pytest.raises(OOMFloorError, match="min_batch_size=8") as raised:
        always.run(lambda: train() if size[0] < 0 else (_ for _ in ()).throw(MemoryError()),
                   lambda err: always.next_batch_size(8, err, epoch=0, step=0))  # fmt: skip
    assert isinstance(raised.value.__cause__, MemoryError)


def test_errors_other_than_oom_pass_through() -> None:
    driver = OOMDriver(OOMPlanConfig())

    def broken(batch_size: int) -> None:
        raise KeyError("not memory")

    with pytest.raises(KeyError, match="not memory"):
        driver.shrink_until_fits(64, broken, free=lambda: None)
    assert driver.events == []


def test_a_failed_emergency_save_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING, logger="green_callbacks"):
        saved = OOMDriver(OOMPlanConfig()).emergency_save(
            tmp_path / "file" / "oom.ckpt", lambda part: part.write_text("w")
        )
    assert saved is None and "could not write the emergency checkpoint" in caplog.text


def test_negative_leak_threshold_is_refused() -> None:
    with pytest.raises(PolicyConfigError, match="min_leak_mib must be >= 0 MiB"):
        OOMDriver(OOMPlanConfig(), min_leak_mib=-1)


def test_the_first_ctrl_c_asks_for_a_save_and_the_second_interrupts(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Python raises KeyboardInterrupt on SIGINT unless it started with SIGINT ignored, as a
    # shell's background job does (`bash .ci/run &`): the test sets Python's usual handler.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    running, _ = session()
    schedule = SaveSchedule(CheckpointPlanConfig(every_kj=100.0))  # SIGTERM and SIGINT
    schedule.start(running)
    try:
        # Python runs a signal's handler at its next check: each kill is followed by a
        # sleep that the handler ends.
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: held for the save
        time.sleep(0.2)
        assert "press Ctrl-C again to interrupt now" in capfd.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second, before a safe point: now
            time.sleep(10)  # interrupted by the handler's KeyboardInterrupt
        decision = schedule.check(epoch_end=False)  # the first is still there to save on
    finally:
        schedule.stop()
        restored = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, inherited)

    assert decision.reason is SaveReason.SIGNAL and schedule.signalled
    assert restored is signal.default_int_handler  # the schedule gave the handler back
