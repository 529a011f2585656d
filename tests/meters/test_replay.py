from __future__ import annotations

from pathlib import Path

import pytest

from green_callbacks.core import EnergyTracker
from green_callbacks.errors import MeterSpecError
from green_callbacks.meters import ReplayMeter
from green_callbacks.testing import FakeClock


def test_ramp_integral_is_exact_between_samples() -> None:
    clock = FakeClock()
    # power rises linearly 0 W -> 100 W over 10 s: E(t) = 5 t^2
    meter = ReplayMeter.from_power([0.0, 10.0], [0.0, 100.0], clock=clock)
    meter.read()  # playback starts at the first read
    clock.advance(3.0)

    assert meter.read().energy_j["replay"] == pytest.approx(45.0)


def test_tracker_windows_get_the_trace_integral(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("time_s,power_w\n0,100\n2,300\n4,300\n6,0\n")
    clock = FakeClock()
    tracker = EnergyTracker([f"replay:{trace}"], sample_interval_s=None, clock=clock).start()
    first = tracker.open("epoch")
    clock.advance(2.0)
    r1 = tracker.close(first)
    second = tracker.open("epoch")
    clock.advance(4.0)
    r2 = tracker.close(second)

    assert r1.energy_j == pytest.approx(400.0)  # (100 + 300) / 2 W x 2 s
    assert r2.energy_j == pytest.approx(600.0 + 300.0)  # 300 W x 2 s, then (300 + 0) / 2 W x 2 s
    assert tracker.stop().energy_j == pytest.approx(1300.0)
    assert r1.kind == "replayed"


def test_cumulative_energy_columns_and_several_domains(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("time_s,gpu:0_j,cpu_w\n10,1000,50\n12,1300,50\n")
    clock = FakeClock()
    meter = ReplayMeter.from_csv(trace, clock=clock)
    meter.read()
    clock.advance(1.0)

    assert meter.read().energy_j == {"gpu:0": pytest.approx(150.0), "cpu": pytest.approx(50.0)}


def test_power_holds_after_the_last_row() -> None:
    clock = FakeClock()
    meter = ReplayMeter.from_power([0.0, 1.0], [10.0, 20.0], clock=clock)
    meter.read()
    clock.advance(3.0)

    assert meter.read().energy_j["replay"] == pytest.approx(15.0 + 20.0 * 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("power_w\n1\n", "header 'time_s,power_w'"),
        ("time_s,power_w\n0,1\n", "at least two rows"),
        ("time_s,power_w\n0,1\n0,2\n", "strictly increase"),
        ("time_s,power_w\n0,1\n1,-2\n", "power must be >= 0"),
        ("time_s,energy_j\n0,5\n1,4\n", "never decrease"),
        ("time_s,watts\n0,1\n1,2\n", "column 'watts'"),
        ("time_s,power_w\n0,1\n1,x\n", "non-numeric"),
        ("time_s,power_w\n0,1\n1\n", "every row needs 2 values"),
        ("time_s,power_w\n0,1\n1,nan\n", "row 2 has value nan; every value must be a finite"),
        ("time_s,power_w\n0,1\n1,inf\n", "row 2 has value inf"),
        ("time_s,energy_j\n0,1\ninf,2\n", "row 2 has time_s inf"),
        ("time_s,power_w\n0,1\n1,1e308\n", r"more than any 'replay' domain draws \(ceiling"),
        ("time_s,gpu:0_w\n0,1\n1,3001\n", "ceiling 3000 W"),
        ("time_s,gpu_w,gpu_j\n0,1,0\n1,1,1\n", "two columns for domain 'gpu'"),
    ],
)
def test_malformed_traces_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(text)

    with pytest.raises(MeterSpecError, match=message):
        ReplayMeter.from_csv(trace)


def test_a_trace_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    trace = tmp_path / "excel.csv"
    trace.write_bytes("time_s,power_w\n0,10\n1,10\n".encode("utf-8-sig"))

    assert [d.name for d in ReplayMeter.from_csv(trace).domains()] == ["replay"]


def test_a_binary_file_is_named_and_refused(tmp_path: Path) -> None:
    trace = tmp_path / "trace.parquet"
    trace.write_bytes(b"PAR1\xff\xfe\x00\x81binary")

    with pytest.raises(MeterSpecError, match=r"trace.parquet is not a text CSV file"):
        ReplayMeter.from_csv(trace)


def test_missing_trace_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(MeterSpecError, match="cannot read replay trace"):
        ReplayMeter.from_csv(tmp_path / "absent.csv")
