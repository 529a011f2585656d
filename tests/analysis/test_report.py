"""The report page and its figures, from constructed runs (no framework needed)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest

from green_callbacks.analysis import RunRecord
from green_callbacks.analysis.report import build_report

pyplot = pytest.importorskip("matplotlib.pyplot")

ACC = (0.50, 0.70, 0.80, 0.85, 0.851, 0.852, 0.852, 0.853)


def full_run(name: str, kind: str = "measured") -> RunRecord:
    epochs = [
        {"epoch": e, "val_acc": a, "energy/train_epoch_j": 900.0, "energy/val_epoch_j": 100.0}
        for e, a in enumerate(ACC)
    ]
    windows = [
        {
            "level": "epoch",
            "name": "train",
            "start_s": 10.0 * e,
            "duration_s": 9.0,
            "energy_j": 900.0,
        }
        for e in range(8)
    ]
    windows += [
        {
            "level": "batch",
            "name": "train",
            "start_s": 10.0 * e + 0.5 * b,
            "duration_s": 0.5,
            "energy_j": 50.0,
        }
        for e in range(8)
        for b in range(18)
    ]
    return RunRecord(
        name,
        ["summary", "trace", "history"],
        total_j=8000.0,
        duration_s=80.0,
        energy_kind=kind,
        energy_source="gpu:0=measured (nvml energy-counter)",
        by_domain={"gpu:0": 6000.0, "cpu": 2000.0},
        epochs=epochs,
        windows=windows,
    )


def not_blank(png: bytes) -> bool:
    image = pyplot.imread(io.BytesIO(png), format="png")
    return float(image.std()) > 0.01


def test_a_full_run_gets_four_figures_advice_and_its_provenance(tmp_path: Path) -> None:
    page = build_report([full_run("run A")], tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "run1_domains.png",
        "run1_epochs.png",
        "run1_power.png",
        "run1_returns.png",
    ]
    text = page.read_text(encoding="utf-8")
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) == 4 and all(not_blank(base64.b64decode(i)) for i in images)
    assert "measured: gpu:0=measured (nvml energy-counter)" in text
    assert "EnergyEarlyStopping(monitor=&quot;val_acc&quot;" in text  # the advice, escaped
    assert "http" not in text.replace("https://", "")  # nothing to fetch: opens offline


def test_checkpoint_saves_are_marked_on_the_power_figure(tmp_path: Path) -> None:
    plain = build_report([full_run("run A")], tmp_path / "plain")
    run = full_run("run A")
    run.facts["checkpoints"] = [{"time_s": 19.0, "path": ""}, {"time_s": 39.0, "path": ""}]
    build_report([run], tmp_path / "saves")
    marked = (tmp_path / "saves" / "run1_power.png").read_bytes()
    assert marked != (plain.parent / "run1_power.png").read_bytes()  # two lines more


def test_several_runs_are_overlaid(tmp_path: Path) -> None:
    page = build_report([full_run("run A"), full_run("run B", "estimated")], tmp_path)
    assert (tmp_path / "runs_overlay.png").is_file()
    text = page.read_text(encoding="utf-8")
    assert "Runs compared" in text and text.count("<section>") == 3


def test_a_run_with_only_a_log_shows_what_it_can_and_says_what_is_missing(tmp_path: Path) -> None:
    run = RunRecord(
        "log.csv",
        ["csv-log"],
        epochs=[{"epoch": 0, "loss": 1.0}],
        missing=["no energy summary: totals and provenance unknown"],
    )
    text = build_report([run], tmp_path).read_text(encoding="utf-8")
    assert "No figure: the sources hold no series." in text
    assert "no energy summary: totals and provenance unknown" in text
    assert "provenance unknown" in text
