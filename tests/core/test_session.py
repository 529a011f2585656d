from __future__ import annotations

import json
from pathlib import Path

import pytest

from green_callbacks.core import keys
from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.session import (
    CallbackConfig,
    CallbackConfigError,
    EnergySession,
)
from green_callbacks.errors import EnergySourceWarning, OutputError, OutputFailureWarning
from green_callbacks.testing import FakeClock, FakeMeter


def session_with(clock: FakeClock, power_w: float = 100.0, **config: object) -> EnergySession:
    meter = FakeMeter({"gpu:0": power_w}, clock=clock)
    cfg = CallbackConfig(meters=[meter], **config)  # type: ignore[arg-type]
    return EnergySession(cfg, clock=clock, sample_interval_s=None).start()


def test_epochs_report_energy_power_per_sample_and_run_total(clock: FakeClock) -> None:
    session = session_with(clock)
    epochs = []
    for _ in range(2):
        session.epoch_start("train")
        for _ in range(4):
            clock.advance(0.5)
            session.batch_end("train", samples=8)
        epochs.append(session.epoch_end("train"))

    assert epochs[0][keys.epoch_j("train")] == 200.0
    assert epochs[0][keys.avg_power_w("train")] == 100.0
    assert epochs[0][keys.j_per_sample("train")] == 200.0 / 32
    assert epochs[1][keys.TOTAL_J] == 400.0
    assert sum(e[keys.epoch_j("train")] for e in epochs) == epochs[-1][keys.TOTAL_J]


def test_after_a_source_fails_the_figures_say_how_much_of_them_is_held(clock: FakeClock) -> None:
    measured = FakeMeter({"cpu": 10.0}, clock=clock)
    failing = FakeMeter({"gpu:0": 100.0}, clock=clock, fail_after=8)  # 7 reads in epoch 1
    config = CallbackConfig(meters=[measured, failing])
    session = EnergySession(config, clock=clock, sample_interval_s=None).start()
    epochs = []
    with pytest.warns(EnergySourceWarning, match="dropped"):
        for _ in range(2):
            session.epoch_start("train")
            clock.advance(1.0)
            session.epoch_start("val")
            clock.advance(1.0)
            epochs.append(session.epoch_end("val"))
            epochs.append(session.epoch_end("train"))

    # epoch 1 measured; in epoch 2 the GPU failed at its first read and is held at 100 W
    assert keys.held_j("train") not in epochs[1] and keys.held_j("val") not in epochs[0]
    assert epochs[2][keys.epoch_j("val")] == 110.0 and epochs[2][keys.held_j("val")] == 100.0
    assert epochs[3][keys.epoch_j("train")] == 110.0 and epochs[3][keys.held_j("train")] == 100.0


def test_the_summary_aggregates_the_figures_under_the_names_they_were_logged(
    clock: FakeClock,
) -> None:
    session = session_with(clock)
    logged = []
    for seconds in (2.0, 3.0):
        session.epoch_start("train")
        clock.advance(seconds)
        session.epoch_start("val")
        clock.advance(1.0)
        logged.append(session.epoch_end("val"))
        logged.append(session.epoch_end("train"))
    summary = session.stop()

    train = summary["metrics"][keys.epoch_j("train")]
    assert train == {"count": 2, "sum": 500.0, "min": 200.0, "max": 300.0, "last": 300.0}
    name = keys.epoch_j("train")
    assert train["sum"] == sum(m[name] for m in logged if name in m)
    assert summary["metrics"][keys.epoch_j("val")]["sum"] == 200.0
    # the raw window of a training epoch includes its validation run: another figure, named apart
    assert summary["windows"]["epoch/train"]["energy_j"] == 700.0


def test_validation_inside_a_training_epoch_is_not_training_energy(clock: FakeClock) -> None:
    session = session_with(clock)
    session.epoch_start("train")
    clock.advance(2.0)
    session.epoch_start("val")
    clock.advance(1.0)
    val = session.epoch_end("val")
    train = session.epoch_end("train")

    assert val[keys.epoch_j("val")] == 100.0
    assert train[keys.epoch_j("train")] == 200.0
    assert train[keys.avg_power_w("train")] == 100.0  # over the 2 s of training only
    assert train[keys.TOTAL_J] == 300.0


def test_batch_granularity_logs_steps_that_skip_validation(clock: FakeClock) -> None:
    session = session_with(clock, granularity="batch")
    session.tracker.poll()
    session.epoch_start("train")
    clock.advance(0.1)
    session.tracker.poll()  # the sampler's tick gives the power
    first = session.batch_end("train", samples=4)
    session.epoch_start("val")
    clock.advance(5.0)
    session.epoch_end("val")
    clock.advance(0.1)
    second = session.batch_end("train", samples=4)

    assert list(first) == [keys.step_j("train")]
    assert second[keys.step_j("train")] == pytest.approx(10.0)  # not the 500 J of validation


def test_epoch_granularity_logs_no_steps(clock: FakeClock) -> None:
    session = session_with(clock, granularity="epoch")
    session.epoch_start("train")
    clock.advance(0.1)

    assert session.batch_end("train", samples=4) == {}


def test_steps_that_will_not_be_logged_are_not_metered(clock: FakeClock) -> None:
    session = session_with(clock)  # granularity "batch", the default
    clock.advance(1.0)
    session.tracker.poll()  # a second sample: 100 W (the sampler thread's job in a real run)
    session.epoch_start("train", measure_first=False)
    steps = []
    for step in range(1, 7):  # a logger that writes every 3rd step
        clock.advance(0.1)
        steps.append(session.batch_end("train", samples=4, measure_next=(step + 1) % 3 == 0))

    # only steps 3 and 6 have a figure, each its own 0.1 s at 100 W
    assert [bool(s) for s in steps] == [False, False, True, False, False, True]
    assert steps[2][keys.step_j("train")] == pytest.approx(10.0)
    assert session.tracker.summary()["windows"]["batch/train"]["count"] == 2


def test_test_and_predict_loops_report_their_energy(clock: FakeClock) -> None:
    session = session_with(clock, carbon_intensity_g_per_kwh=360.0)
    session.epoch_start("predict")
    clock.advance(3.0)
    session.batch_end("predict", samples=30)
    metrics = session.epoch_end("predict")

    assert metrics[keys.loop_j("predict")] == 300.0
    assert metrics[keys.j_per_sample("predict")] == 10.0
    assert metrics[keys.CARBON_TOTAL_G] == pytest.approx(300.0 / 3_600_000 * 360.0)


def test_summary_is_written_atomically_and_names_sources(clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "runs" / "summary.json"
    session = session_with(clock, summary_path=path)
    clock.advance(1.0)

    session.stop()

    summary = json.loads(path.read_text())
    assert summary["totals"]["energy_j"] == 100.0
    assert summary["totals"]["sources"][0]["kind"] == "measured"
    assert list(path.parent.iterdir()) == [path]  # no temp file left


@pytest.mark.parametrize("strict", [False, True])
def test_a_summary_path_that_is_a_folder_is_left_alone(
    clock: FakeClock, tmp_path: Path, strict: bool
) -> None:
    (tmp_path / "summary.json").mkdir()  # or a device, a mount point...
    session = session_with(clock, summary_path=tmp_path / "summary.json", strict=strict)
    clock.advance(1.0)

    if strict:
        with pytest.raises(OutputError, match="strict mode: energy summary .* cannot be written"):
            session.stop()
        assert not session.running
    else:
        with pytest.warns(OutputFailureWarning, match="summary.json cannot be written.*regular"):
            summary = session.stop()
        assert summary["totals"]["energy_j"] == 100.0  # still returned to the caller
    assert (tmp_path / "summary.json").is_dir() and not list((tmp_path / "summary.json").iterdir())


def test_provenance_labels_every_domain(clock: FakeClock) -> None:
    session = session_with(clock)

    assert session.provenance() == {
        "energy_source/gpu:0": "measured (fake scripted-power)",
        "energy_source/kind": "measured",
    }


def test_resume_continues_the_total(clock: FakeClock) -> None:
    first = session_with(clock)
    clock.advance(2.0)
    state = first.state_dict()
    first.stop()

    second = session_with(clock)
    second.load_state_dict(state)
    clock.advance(1.0)

    assert second.totals()[keys.TOTAL_J] == 300.0


def test_bad_granularity_says_what_to_pass() -> None:
    with pytest.raises(CallbackConfigError, match="'epoch' or 'batch'"):
        CallbackConfig(granularity="step")


def test_run_state_carries_policies_and_reads_older_and_refuses_newer() -> None:
    class Part:
        def __init__(self) -> None:
            self.state: dict[str, object] = {}

        def state_dict(self) -> dict[str, object]:
            return {"saves": 3}

        def load_state_dict(self, state: dict[str, object]) -> None:
            self.state = state

    saving = EnergyCallbackArgs()
    saving.register_state("checkpoint", Part())
    state = saving.run_state()
    assert state == {"version": 1, "energy": {}, "parts": {"checkpoint": {"saves": 3}}}

    resumed, late = EnergyCallbackArgs(), Part()
    resumed.load_run_state(state)
    resumed.register_state("checkpoint", late)  # registered after loading: handed over then
    assert late.state == {"saves": 3}

    older = EnergyCallbackArgs()
    older.load_run_state({"energy_j": 5.0})  # version 0: the energy state alone
    assert older.state_dict() == {"energy_j": 5.0}
    with pytest.raises(CallbackConfigError, match="version 2, newer than this"):
        older.load_run_state({"version": 2, "energy": {}, "parts": {}})


CRASHING_SCRIPT = """
import sys
from green_callbacks.core.callback_args import EnergyCallbackArgs
callback = EnergyCallbackArgs(meters="estimate", summary_path=sys.argv[1])
callback._open_session(sample_interval_s=None)
raise RuntimeError("the training script crashed")
"""


def test_a_run_still_open_when_the_process_exits_writes_its_summary(tmp_path: Path) -> None:
    import subprocess
    import sys

    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_SCRIPT, str(summary)], capture_output=True, text=True,
        check=False,
    )  # fmt: skip

    assert done.returncode == 1 and "the training script crashed" in done.stderr
    written = json.loads(summary.read_text())
    assert "the process exited before this run's end hook ran" in written["notes"]
    assert written["totals"]["energy_j"] >= 0
