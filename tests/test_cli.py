"""The command line, run as a user runs it: a real subprocess of the console entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from green_callbacks.testing import FakePowercapTree

CLI = [sys.executable, "-m", "green_callbacks.cli"]


def measure(
    *args: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = subprocess.run(
        [*CLI, "measure", "--json", *args], capture_output=True, text=True, timeout=timeout
    )
    return done, json.loads(done.stdout) if done.stdout.strip() else {}


def test_measure_on_this_machine_reports_a_labelled_positive_figure() -> None:
    done, report = measure(
        "--meter", "estimate", "--", sys.executable, "-c", "import time; time.sleep(0.6)"
    )

    assert done.returncode == 0, done.stderr
    assert report["energy_j"] > 0
    assert 0.6 <= report["duration_s"] < 0.6 + 2.0  # the command's duration plus its start-up
    assert report["avg_power_w"] == pytest.approx(report["energy_j"] / report["duration_s"])
    assert set(report["domains"]) == {"cpu", "dram"}
    assert {s["kind"] for s in report["sources"]} == {"estimated"}
    assert report["kind"] == "estimated"


def test_measure_with_replay_matches_the_trace_integral(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("time_s,power_w\n0,100\n0.5,300\n1.0,100\n1.5,300\n60,300\n")
    done, report = measure(
        "--meter", f"replay:{trace}", "--", sys.executable, "-c", "import time; time.sleep(1.2)"
    )
    t = report["duration_s"]
    # integral of the trace over [0, t] for t in [1.0, 60]: 200 J in the first second, then
    # a 100 -> 300 W ramp over 0.5 s, then 300 W.
    ramp = min(t - 1.0, 0.5)
    expected = 200.0 + 100.0 * ramp + 0.5 * 400.0 * ramp * ramp + 300.0 * max(t - 1.5, 0.0)

    assert done.returncode == 0, done.stderr
    assert report["energy_j"] == pytest.approx(expected, rel=0.005)
    assert report["sources"][0]["kind"] == "replayed"


SCRIPT_ADVANCING_COUNTERS = """
import os, sys, time
from pathlib import Path
root = Path(sys.argv[1])
def bump(zone, delta, limit):  # atomic, as sysfs is: readers never see a half-written value
    path = root / zone / "energy_uj"
    (root / "tmp").write_text(str((int(path.read_text()) + delta) % limit))
    os.replace(root / "tmp", path)
for _ in range(3):  # 3 x 0.7 J on a 1 J package counter: wraps twice
    time.sleep(0.3)
    bump("intel-rapl:0", 700_000, 1_000_000)
    bump("intel-rapl:0/intel-rapl:0:1", 123_456, 10_000_000)
time.sleep(0.3)
"""


def test_measure_with_rapl_reports_counter_deltas_exactly_wraps_included(tmp_path: Path) -> None:
    tree = FakePowercapTree(tmp_path / "powercap")
    tree.add_zone("intel-rapl:0", "package-0", max_range_uj=1_000_000, energy_uj=900_000)
    tree.add_zone("intel-rapl:0:1", "dram", max_range_uj=10_000_000, energy_uj=5)

    done, report = measure(
        "--meter",
        f"rapl:{tree.root}",
        "--interval",
        "0.02",
        "--",
        sys.executable,
        "-c",
        SCRIPT_ADVANCING_COUNTERS,
        str(tree.root),
    )

    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    assert report["domains"] == {
        "cpu:0": pytest.approx(2.1, abs=1e-9),
        "dram:0": pytest.approx(0.370368, abs=1e-9),
    }
    assert report["energy_j"] == pytest.approx(2.470368, abs=1e-9)
    assert {s["kind"] for s in report["sources"]} == {"measured"}


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("import sys; sys.exit(3)", 3),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 128 + 15),
    ],
)
def test_measure_propagates_the_exit_code(command: str, code: int) -> None:
    done, report = measure("--meter", "estimate", "--", sys.executable, "-c", command)

    assert done.returncode == code
    assert report["exit_code"] == code


def test_measure_reports_a_missing_command() -> None:
    done, _ = measure("--meter", "estimate", "--", "no-such-command-xyz")

    assert done.returncode == 127
    assert "command not found: no-such-command-xyz" in done.stderr


def test_human_report_goes_to_stderr_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    done = subprocess.run(
        [*CLI, "measure", "--meter", "estimate", "-o", str(out), "--", "true"],
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0
    assert "estimated (estimate utilization-model)" in out.read_text()


def test_bad_meter_spec_is_a_usage_error() -> None:
    done = subprocess.run(
        [*CLI, "measure", "--meter", "watts", "--", "true"], capture_output=True, text=True
    )

    assert done.returncode == 2
    assert "unknown meter 'watts'" in done.stderr and "replay:/path/to/trace.csv" in done.stderr


def test_measure_without_a_command_is_a_usage_error() -> None:
    done = subprocess.run([*CLI, "measure"], capture_output=True, text=True)

    assert done.returncode == 2
    assert "no command given" in done.stderr


def test_meters_lists_choice_reasons_and_fixes(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "meters", "--powercap-root", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0
    assert "[chosen ] estimate" in done.stdout
    assert "[not used] rapl: no powercap folder" in done.stdout
    assert "cpu" in done.stdout and "estimated (estimate utilization-model)" in done.stdout
    assert "warning" not in done.stderr


def test_meters_json_lists_findings_and_domains(powercap: FakePowercapTree) -> None:
    done = subprocess.run(
        [*CLI, "meters", "--json", "--powercap-root", str(powercap.root)],
        capture_output=True,
        text=True,
    )
    payload = json.loads(done.stdout)

    chosen = {f["source"] for f in payload["findings"] if f["chosen"]}
    assert "rapl" in chosen and "estimate" not in chosen
    assert {d["domain"] for d in payload["domains"]} >= {"cpu:0", "dram:1"}


BAD_INPUT = [
    (["measure", "--interval", "0", "--", "true"], "--interval: must be a number > 0, got '0'"),
    (["measure", "--interval", "-1", "--", "true"], "must be a number > 0, got '-1'"),
    (["measure", "--idle-baseline", "-1", "--", "true"], "must be a number >= 0, got '-1'"),
    (["measure", "--pue", "0.5", "--", "true"], "--pue: must be a number >= 1, got '0.5'"),
    (["measure", "--carbon-intensity", "x", "--", "true"], "must be a number >= 0, got 'x'"),
    (["measure", "--meter", "nope", "--", "true"], "nope"),
    (["demo", "--epochs", "abc"], "--epochs: must be a positive whole number, got 'abc'"),
    (["demo", "--epochs", "0"], "must be a positive whole number, got '0'"),
    (["demo", "--meter", "foo"], "foo"),
    (["study", "run", "--out", "x"], "give a STUDY file or --preset, one of them"),
    (["study", "run", "s.toml", "--preset", "frameworks", "--out", "x"], "one of them"),
    (["study", "run", "s.toml", "--quick", "--out", "x"], "--quick goes with --preset"),
    (["study", "run", "no-such-study.toml", "--out", "x"], "cannot read study file"),
    (["study", "stats", "no-such-runs.csv", "--factor", "f"], "cannot read the runs in"),
    (["study", "stats", "x.csv", "--factor", "f", "--alpha", "0"], "must be a number > 0"),
    (["study", "report", "no-such-folder"], "cannot read the runs in"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_with_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "_positive_int" not in done.stderr and done.stdout == ""


def test_demo_out_that_is_a_file_fails_before_training(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = subprocess.run(
        [*CLI, "demo", "--out", str(tmp_path / "file")], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "is a file; give a folder" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_measure_output_that_cannot_be_written_keeps_the_exit_code_and_figures(
    tmp_path: Path,
) -> None:
    (tmp_path / "dir").mkdir()
    refused = subprocess.run(
        [*CLI, "measure", "--meter", "estimate", "-o", str(tmp_path / "dir"), "--", "false"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "is not a regular file" in refused.stderr  # before running

    made = tmp_path / "missing" / "folder" / "report.json"
    done = subprocess.run(
        [*CLI, "measure", "--json", "--meter", "estimate", "-o", str(made), "--", "false"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1  # the command's own exit code
    assert json.loads(made.read_text())["exit_code"] == 1  # its folders were made


def test_meters_into_a_closed_pipe_is_quiet() -> None:
    # as `meters --json | head -1` once head has gone: the reader closes before any write
    child = subprocess.Popen(
        [*CLI, "meters", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    stderr = child.stderr.read()
    assert child.wait(timeout=60) == 0
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr
