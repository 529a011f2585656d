"""``green-callbacks demo``: a real digits run, its table, logs and summary."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch", reason="needs the 'demo' extra")
pytest.importorskip("sklearn", reason="needs the 'demo' extra")
pytest.importorskip("tensorboard", reason="needs the 'demo' extra")

from green_callbacks import cli
from green_callbacks.lightning.demo import (
    FIGURE_FILE,
    DemoConfig,
    run_demo,
    sources_line,
)
from green_callbacks.testing import constant_power_trace

POWER_W = 40.0


@pytest.fixture
def trace(tmp_path: Path) -> str:
    return constant_power_trace(tmp_path, POWER_W)


def test_demo_prints_a_row_per_epoch_and_writes_logs(tmp_path: Path, trace: str) -> None:
    out = io.StringIO()
    summary = run_demo(DemoConfig(epochs=2, out=tmp_path / "run", meters=[trace]), out)

    lines = out.getvalue().splitlines()
    header = lines.index(next(line for line in lines if "val_acc" in line))
    rows = [line.split() for line in lines[header + 1 : header + 3]]
    assert [r[0] for r in rows] == ["0", "1"]  # numbered as in the CSV and TensorBoard logs
    accuracy, train_j, val_j, watts, total_j = (float(v) for v in rows[-1][1:])
    assert 0.5 < accuracy <= 1.0  # a CNN learns digits in two epochs
    assert train_j > 0 and val_j > 0
    assert watts == pytest.approx(POWER_W, abs=0.01)  # the replayed trace's power
    assert total_j >= float(rows[0][5]) + train_j + val_j - 0.01
    assert "energy figures are replayed" in out.getvalue()

    logs = tmp_path / "run" / "csv" / "version_0"
    with (logs / "metrics.csv").open() as handle:
        logged = [r for r in csv.DictReader(handle) if r.get("energy/train_epoch_j")]
    assert [int(r["epoch"]) for r in logged] == [0, 1]
    assert [float(r["energy/train_epoch_j"]) for r in logged][-1] == pytest.approx(train_j, 0.01)
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    run = tmp_path / "run" / "energy" / "version_0"
    assert f"energy run:       {run} " in out.getvalue()
    written = json.loads((run / "summary.json").read_text())
    assert written["totals"]["kind"] == "replayed"
    assert written["totals"]["energy_j"] == pytest.approx(summary["totals"]["energy_j"])
    assert (run / FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"figure:           {run / FIGURE_FILE}" in out.getvalue()
    assert "tensorboard --logdir" in out.getvalue()


def test_a_second_run_keeps_the_first_runs_folder(tmp_path: Path, trace: str) -> None:
    for _ in range(2):
        run_demo(DemoConfig(epochs=1, out=tmp_path / "run", meters=[trace]), io.StringIO())

    for kind, name in (("energy", "history.jsonl"), ("csv", "metrics.csv")):
        found = sorted((tmp_path / "run" / kind).glob(f"version_*/{name}"))
        assert [p.parent.name for p in found] == ["version_0", "version_1"]
    history = (tmp_path / "run" / "energy" / "version_1" / "history.jsonl").read_text()
    assert [json.loads(line)["epoch"] for line in history.splitlines()] == [0]  # its own only


def test_the_sources_line_names_each_domain_once() -> None:
    line = sources_line({"totals": {"kind": "mixed", "sources": [
        {"domain": "gpu:0", "kind": "measured", "source": "nvml", "method": "energy-counter"},
        {"domain": "cpu", "kind": "estimated", "source": "estimate", "method": "utilization-model"},
    ]}})  # fmt: skip
    assert line == (
        "energy figures are mixed: gpu:0 from nvml (energy-counter), measured, "
        "cpu from estimate (utilization-model), estimated"
    )


def test_demo_command_rejects_a_bad_epoch_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--epochs", "0"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "must be a positive whole number, got '0'" in capsys.readouterr().err
