from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from green_callbacks.core import J_PER_KWH, EnergyTracker
from green_callbacks.errors import EnergySourceWarning, MeterReadError, TrackerStateError
from green_callbacks.meters.base import Domain
from green_callbacks.testing import FakeClock, FakeMeter


def make(
    clock: FakeClock, power: dict[str, float] | None = None, **kwargs: object
) -> tuple[EnergyTracker, FakeMeter]:
    meter = FakeMeter(power or {"gpu:0": 200.0, "cpu": 50.0}, clock=clock)
    tracker = EnergyTracker(
        [meter], sample_interval_s=None, clock=clock, sleep=clock.sleep, **kwargs
    )  # type: ignore[arg-type]
    return tracker.start(), meter


def test_nested_windows_attribute_energy_per_domain(clock: FakeClock) -> None:
    tracker, _ = make(clock)
    phase = tracker.open("phase", "train")
    epochs = []
    for _ in range(2):
        epoch = tracker.open("epoch", "train")
        clock.advance(3.0)
        epochs.append(tracker.close(epoch))
    phase_result = tracker.close(phase)
    clock.advance(1.0)
    totals = tracker.stop()

    assert epochs[0].energy_by_domain == {"gpu:0": 600.0, "cpu": 150.0}
    assert epochs[0].energy_j == 750.0 and epochs[0].avg_power_w == 250.0
    assert phase_result.energy_j == sum(e.energy_j for e in epochs)
    assert totals.energy_j == 1750.0 and totals.duration_s == 7.0
    assert tracker.stats("epoch", "train").count == 2
    assert tracker.stats("epoch", "train").energy_j == 1500.0


def test_batch_windows_interpolate_between_samples(clock: FakeClock) -> None:
    tracker, meter = make(clock, {"gpu:0": 100.0})
    epoch = tracker.open("epoch")
    clock.advance(0.1)
    tracker.poll()  # sampler tick: the meter is read at 0.1 s
    reads = meter.reads
    batches = []
    for _ in range(4):
        batch = tracker.open("batch")
        clock.advance(0.025)
        batches.append(tracker.close(batch))

    assert meter.reads == reads  # batch boundaries never touch the sensor
    assert [b.energy_j for b in batches] == pytest.approx([2.5] * 4)
    assert all(b.interpolated for b in batches)
    assert tracker.close(epoch).energy_j == pytest.approx(20.0)


def test_interpolated_windows_are_never_negative(clock: FakeClock) -> None:
    tracker, meter = make(clock, {"gpu:0": 1000.0})
    clock.advance(1.0)
    tracker.poll()
    batch = tracker.open("batch")  # extrapolates at 1000 W
    meter.set_power(**{"gpu:0": 0.0})
    clock.advance(1.0)
    tracker.poll()  # the sensor shows the load stopped
    first = tracker.close(batch)
    second = tracker.close(tracker.open("batch"))

    assert first.energy_j >= 0.0 and second.energy_j >= 0.0


def test_idle_baseline_reports_energy_above_idle(clock: FakeClock) -> None:
    tracker, meter = make(clock, {"gpu:0": 60.0}, idle_baseline_s=5.0)
    assert tracker.idle_power_w == {"gpu:0": 60.0}
    meter.set_power(**{"gpu:0": 260.0})
    epoch = tracker.open("epoch")
    clock.advance(2.0)

    result = tracker.close(epoch)

    assert result.energy_j == 520.0
    assert result.idle_j == 120.0
    assert result.above_idle_j == 400.0
    assert tracker.stop().duration_s == 2.0  # the idle measurement is not part of the run


def test_carbon_from_intensity_and_pue(clock: FakeClock) -> None:
    tracker, _ = make(clock, {"gpu:0": 1000.0}, carbon_intensity_g_per_kwh=400.0, pue=1.5)
    clock.advance(3600.0)

    totals = tracker.stop()

    assert totals.energy_j == J_PER_KWH
    assert totals.carbon_g == pytest.approx(600.0)


def test_state_round_trip_continues_totals_after_resume(clock: FakeClock) -> None:
    first, _ = make(clock)
    epoch = first.open("epoch", "train")
    clock.advance(2.0)
    first.close(epoch)
    state = json.loads(json.dumps(first.state_dict()))  # plain numbers and strings only
    first.stop()

    second, _ = make(clock)
    second.load_state_dict(state)
    epoch = second.open("epoch", "train")
    clock.advance(2.0)
    second.close(epoch)
    totals = second.stop()

    assert totals.energy_j == 1000.0  # 2 x 250 W x 2 s
    assert totals.duration_s == 4.0
    assert second.stats("epoch", "train").count == 2
    assert second.summary()["resumed"] is True


def test_state_from_another_machine_keeps_its_domains(clock: FakeClock) -> None:
    gpu_run, _ = make(clock, {"gpu:0": 100.0})
    clock.advance(1.0)
    state = gpu_run.state_dict()
    gpu_run.stop()

    cpu_run, _ = make(clock, {"cpu": 10.0})
    cpu_run.load_state_dict(state)
    clock.advance(1.0)

    assert cpu_run.stop().energy_by_domain == {"cpu": 10.0, "gpu:0": 100.0}


@pytest.mark.parametrize(
    "state", [{}, {"format": "other/1"}, [1, 2], {"format": "green_callbacks.tracker/1"}]
)
def test_bad_state_is_refused_clearly(clock: FakeClock, state: object) -> None:
    tracker, _ = make(clock)

    with pytest.raises(TrackerStateError, match="tracker state|state_dict"):
        tracker.load_state_dict(state)  # type: ignore[arg-type]


def test_sampler_thread_starts_and_stops_without_leaks() -> None:
    before = set(threading.enumerate())
    meter = FakeMeter({"gpu:0": 10.0})
    tracker = EnergyTracker([meter], sample_interval_s=0.005).start()
    started = [t for t in threading.enumerate() if t.name == "green-callbacks-sampler"]
    deadline = threading.Event()
    while meter.reads < 3 and not deadline.wait(0.005):
        pass

    tracker.stop()

    assert len(started) == 1
    assert meter.reads >= 3 and meter.closed
    assert set(threading.enumerate()) == before


def test_a_failing_source_is_held_at_its_mean_power_and_labelled_estimated(
    clock: FakeClock,
) -> None:
    good = FakeMeter({"cpu": 10.0}, clock=clock)
    bad = FakeMeter({"gpu:0": 100.0}, clock=clock, fail_after=3)  # read at 0 s and 1 s only
    tracker = EnergyTracker([good, bad], sample_interval_s=None, clock=clock).start()
    clock.advance(1.0)
    before = tracker.open("epoch", "train")

    with pytest.warns(EnergySourceWarning, match="'fake'.*dropped.*gpu:0=100 W") as caught:
        for _ in range(3):
            tracker.poll()
            clock.advance(1.0)
        epoch = tracker.close(before)
        totals = tracker.stop()

    assert len(caught) == 1
    # 100 W measured until 1 s, then held at that mean: not the 0 W of a dead sensor
    assert totals.energy_by_domain == {"cpu": 40.0, "gpu:0": 400.0}
    assert epoch.energy_j == 330.0
    held = {d.name: d for d in totals.layout.domains}["gpu:0"]
    assert (held.kind, held.source, held.method) == ("estimated", "fake", "held-power")
    assert totals.kind == epoch.layout.kind() == "mixed"
    assert "scripted failure" in totals.notes[0] and "estimated" in totals.notes[0]


def test_strict_mode_raises_the_failure(clock: FakeClock) -> None:
    bad = FakeMeter({"gpu:0": 1.0}, clock=clock, fail_after=3)
    tracker = EnergyTracker([bad], sample_interval_s=None, clock=clock, strict=True).start()
    clock.advance(1.0)
    tracker.poll()

    with pytest.raises(MeterReadError, match="strict mode"):
        tracker.open("epoch")
    with pytest.raises(MeterReadError, match="strict mode"):  # it sticks: no quiet success later
        tracker.open("epoch")
    with pytest.raises(MeterReadError, match="strict mode"):
        tracker.stop()
    assert not tracker.running  # stopped all the same: no thread or meter left
    assert tracker.summary()["totals"]["energy_j"] == 1.0  # and the figures kept


def test_trace_file_gets_one_line_per_window(clock: FakeClock, tmp_path: Path) -> None:
    trace = tmp_path / "out" / "trace.jsonl"
    tracker, _ = make(clock, {"gpu:0": 10.0}, trace_path=trace)
    for _ in range(3):
        batch = tracker.open("batch")
        clock.advance(1.0)
        tracker.close(batch)
    tracker.stop()

    rows = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["level"] for r in rows] == ["batch", "batch", "batch", "run"]
    assert rows[-1]["energy_j"] == 30.0


def test_unwritable_trace_warns_and_training_goes_on(clock: FakeClock, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(EnergySourceWarning, match="trace file"):
        tracker, _ = make(clock, trace_path=blocker / "trace.jsonl")
    clock.advance(1.0)

    assert tracker.stop().energy_j == 250.0


def test_memory_is_bounded_without_a_trace(clock: FakeClock) -> None:
    tracker, _ = make(clock)
    for _ in range(1000):
        tracker.close(tracker.open("batch", "train"))
        clock.advance(0.001)

    assert len(tracker.window_stats) == 1
    assert tracker.stats("batch", "train").count == 1000


def test_misuse_is_reported(clock: FakeClock) -> None:
    tracker = EnergyTracker(
        [FakeMeter({"x": 1.0}, clock=clock)], sample_interval_s=None, clock=clock
    )
    with pytest.raises(TrackerStateError, match="call start"):
        tracker.open("epoch")
    tracker.start()
    with pytest.raises(ValueError, match="level must be one of"):
        tracker.open("step")
    window = tracker.open("epoch")
    tracker.close(window)
    with pytest.raises(TrackerStateError, match="already closed"):
        tracker.close(window)
    with pytest.raises(TrackerStateError, match="already started"):
        tracker.start()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_interval_s": 0}, "sample_interval_s"),
        ({"idle_baseline_s": -1}, "idle_baseline_s"),
        ({"pue": 0.5, "carbon_intensity_g_per_kwh": 100}, "pue"),
    ],
)
def test_bad_arguments_say_what_to_pass(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnergyTracker("estimate", **kwargs)  # type: ignore[arg-type]


def test_context_manager_and_window_helper(clock: FakeClock) -> None:
    with (
        EnergyTracker(
            [FakeMeter({"gpu:0": 5.0}, clock=clock)], sample_interval_s=None, clock=clock
        ) as tracker,
        tracker.window("epoch", "val") as box,
    ):
        clock.advance(2.0)
    assert box[0].energy_j == 10.0
    assert not tracker.running
    assert tracker.summary()["totals"]["energy_j"] == 10.0


def test_warnings_point_at_the_callers_line(clock: FakeClock) -> None:
    failing = FakeMeter({"gpu:0": 1.0}, clock=clock, fail_after=1)
    tracker = EnergyTracker([failing], sample_interval_s=None, clock=clock)

    with pytest.warns(EnergySourceWarning) as caught:
        tracker.start()

    assert caught[0].filename == __file__
    tracker.stop()


def test_laps_meter_contiguous_batches_with_one_call_each(clock: FakeClock) -> None:
    tracker, _ = make(clock, {"gpu:0": 100.0})
    clock.advance(0.1)
    tracker.poll()
    epoch = tracker.open("epoch", "train")
    batch = tracker.open("batch", "train")
    laps = []
    for _ in range(4):
        clock.advance(0.05)
        laps.append(tracker.lap(batch))

    assert [r.energy_j for r in laps] == pytest.approx([5.0] * 4)
    assert sum(r.energy_j for r in laps) == pytest.approx(tracker.close(epoch).energy_j)
    assert tracker.stats("batch", "train").count == 4
    assert laps[1].start_s == laps[0].start_s + laps[0].duration_s


def test_lap_needs_an_open_interpolated_window(clock: FakeClock) -> None:
    tracker, _ = make(clock)
    exact = tracker.open("epoch")

    with pytest.raises(TrackerStateError, match="opened with exact=True"):
        tracker.lap(exact)


def test_a_failed_start_leaves_no_thread_or_open_meter() -> None:
    before = set(threading.enumerate())
    frozen = FakeClock()  # never advances: the idle baseline cannot be measured
    meter = FakeMeter({"gpu:0": 1.0}, clock=frozen)
    tracker = EnergyTracker([meter], idle_baseline_s=1.0, clock=frozen, sleep=lambda s: None)

    with pytest.raises(TrackerStateError, match="idle baseline"):
        tracker.start()

    assert meter.closed and not tracker.running
    assert set(threading.enumerate()) == before


def test_a_run_starts_without_waiting_and_its_first_batches_get_the_runs_power() -> None:
    """With a sampler (here one that never ticks), the first batches come before any power."""
    clock = FakeClock()
    meter = FakeMeter({"gpu:0": 100.0}, clock=clock)
    waits: list[float] = []
    tracker = EnergyTracker([meter], sample_interval_s=3600.0, clock=clock,
                            sleep=waits.append).start()  # fmt: skip
    try:
        assert waits == []  # no priming wait: starting costs readings, not time
        batch = tracker.open("batch", "train")
        clock.advance(0.01)
        reads = meter.reads
        assert tracker.lap(batch).energy_j == pytest.approx(1.0)  # 10 ms at 100 W, not 0 J
        assert meter.reads == reads + 1  # before a power, a batch boundary reads the sensor
        meter.set_power(**{"gpu:0": 300.0})
        clock.advance(0.02)
        # the run's mean power so far: (1 J + 6 J) over 30 ms, times this batch's 20 ms
        assert tracker.lap(batch).energy_j == pytest.approx(7.0 * 2 / 3)
        clock.advance(0.05)
        tracker.poll()  # the sampler's sample, 50 ms on: the model has a power now
        reads = meter.reads
        clock.advance(0.01)
        # read exactly until the sample (50 ms at 300 W: 15 J), then the model's power: the
        # mean over its first span, 22 J in 80 ms (275 W), for 10 ms
        assert tracker.lap(batch).energy_j == pytest.approx(15.0 + 2.75)
        clock.advance(0.01)
        assert tracker.lap(batch).energy_j == pytest.approx(2.75)  # interpolated
        assert meter.reads == reads  # and no read at the boundary any more
    finally:
        tracker.stop()


def test_before_a_power_short_batches_read_the_sensors_at_most_every_10_ms() -> None:
    """Batches of 1 ms before the sampler's first power: a read every 10 ms, not at each;
    the ones between take the run's mean power at the latest reading, and nothing is
    counted twice when the model gets its power."""
    clock = FakeClock()
    meter = FakeMeter({"gpu:0": 100.0}, clock=clock)
    tracker = EnergyTracker([meter], sample_interval_s=3600.0, clock=clock).start()
    try:
        epoch = tracker.open("epoch", "train")
        batch = tracker.open("batch", "train")
        reads = meter.reads
        laps = []
        for _ in range(40):  # 40 batches of 1 ms
            clock.advance(0.001)
            laps.append(tracker.lap(batch).energy_j)
        assert meter.reads - reads == 4  # at 1 ms (the first after the start), 11, 21, 31 ms
        assert laps == pytest.approx([0.1] * 40)  # 1 ms at 100 W each
        assert tracker.peek(epoch) == pytest.approx(4.0)  # no read: the mean power run on
        assert meter.reads - reads == 4
        clock.advance(0.0005)
        tracker.poll()  # the model has a power now: 100 W
        clock.advance(0.0005)
        assert tracker.lap(batch).energy_j == pytest.approx(0.1)  # from 40 ms, once
        assert tracker.close(epoch).energy_j == pytest.approx(4.1)
    finally:
        tracker.stop()


class NestedFakeMeter(FakeMeter):
    """A fake whose ``core`` domain is part of its ``package`` one, as RAPL's is."""

    def domains(self) -> tuple[Domain, ...]:
        return tuple(
            replace(d, part_of="package") if d.name == "core" else d for d in super().domains()
        )


@pytest.mark.parametrize("nested", [False, True])
def test_lap_j_gives_lap_s_energy_across_samples_and_power_changes(
    clock: FakeClock, nested: bool
) -> None:
    """The per-step path (lap_j) against the full one (lap) on the same sequence: the same
    figures, under one model and across new samples, and the same batch statistics; a
    domain nested in another is not added twice."""
    if nested:  # package 250 W, of which core 50 W: 250 W in all, as with gpu + cpu
        meters = [NestedFakeMeter({"package": 250.0, "core": 50.0}, clock=clock) for _ in "ab"]
        full = EnergyTracker([meters[0]], sample_interval_s=None, clock=clock).start()
        quick = EnergyTracker([meters[1]], sample_interval_s=None, clock=clock).start()
        full_meter, quick_meter = meters
    else:
        full, full_meter = make(clock)
        quick, quick_meter = make(clock)
    for tracker in (full, quick):
        tracker.poll()
    clock.advance(1.0)
    full.poll(), quick.poll()  # a power for both: 250 W
    windows = (full.open("batch", "train"), quick.open("batch", "train"))
    figures: tuple[list[float], list[float]] = ([], [])
    for step in range(6):
        clock.advance(0.1 * (step + 1))
        figures[0].append(full.lap(windows[0]).energy_j)
        figures[1].append(quick.lap_j(windows[1]))
        if step == 2:  # a new sample at a new power between two batches
            for meter in (full_meter, quick_meter):
                meter.set_power(**({"package": 120.0, "core": 20.0} if nested else
                                   {"gpu:0": 100.0, "cpu": 20.0}))  # fmt: skip
            clock.advance(0.05)
            full.poll(), quick.poll()

    assert figures[1] == pytest.approx(figures[0])
    assert figures[1][:3] == pytest.approx([25.0, 50.0, 75.0])  # 250 W for 0.1, 0.2, 0.3 s
    a, b = full.stats("batch", "train"), quick.stats("batch", "train")
    assert (b.count, b.energy_j, b.duration_s) == pytest.approx((a.count, a.energy_j, a.duration_s))
    assert b.count == 6
