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
from green_callbacks.lightning.demo import SUMMARY_FILE, DemoConfig, run_demo
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
    assert [r[0] for r in rows] == ["1", "2"]
    accuracy, train_j, val_j, watts, total_j = (float(v) for v in rows[-1][1:])
    assert 0.5 < accuracy <= 1.0  # a CNN learns digits in two epochs
    assert train_j > 0 and val_j > 0
    assert watts == pytest.approx(POWER_W, abs=0.01)  # the replayed trace's power
    assert total_j >= float(rows[0][5]) + train_j + val_j - 0.01
    assert "energy figures are replayed" in out.getvalue()

    with next((tmp_path / "run" / "csv").rglob("metrics.csv")).open() as handle:
        logged = [r for r in csv.DictReader(handle) if r.get("energy/train_epoch_j")]
    assert [float(r["energy/train_epoch_j"]) for r in logged][-1] == pytest.approx(train_j, 0.01)
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    written = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert written["totals"]["kind"] == "replayed"
    assert written["totals"]["energy_j"] == pytest.approx(summary["totals"]["energy_j"])


def test_demo_command_rejects_a_bad_epoch_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--epochs", "0"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "must be a positive whole number, got '0'" in capsys.readouterr().err
