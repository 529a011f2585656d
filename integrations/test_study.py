"""A real two-level study end to end: run in fresh processes, then stats and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("scipy", reason="needs the 'study' extra")
pytest.importorskip("matplotlib", reason="needs the 'study' extra")

from green_callbacks.testing import constant_power_trace

PNG = b"\x89PNG\r\n\x1a\n"


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "green_callbacks.cli", *arguments],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_two_level_study_runs_and_reports(tmp_path: Path) -> None:
    trace = constant_power_trace(tmp_path, 60.0)
    (tmp_path / "study.toml").write_text(
        "[study]\nrepetitions = 3\nwarmup = 1\ncooldown_s = 0.1\n"
        f'meters = ["{trace}"]\nphases = ["train", "inference"]\n\n'
        "[factors]\nsize = [1000, 100000]\n\n"
        '[[workloads]]\nname = "spin"\nentry = "green_callbacks.study.workloads:spin"\n'
    )
    out = tmp_path / "out"

    ran = cli("study", "run", str(tmp_path / "study.toml"), "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    assert "[16/16]" in ran.stderr and "16 runs recorded" in ran.stderr  # 2 x 2 x (3 + 1)

    reported = cli("study", "report", str(out))
    assert reported.returncode == 0, reported.stderr
    report = out / "report"
    comparisons = json.loads((report / "comparisons.json").read_text())
    energy = [c for c in comparisons if c["metric"] == "energy_j"]
    assert {c["by"]["phase"] for c in energy} == {"train", "inference"}
    for comparison in energy:  # the smaller size always costs less: A12 = 0, 3 runs a side
        assert comparison["best"] == "1000" and comparison["a12"] == 0.0
        assert comparison["p_value"] == pytest.approx(0.1) and comparison["winner"] is None
        assert comparison["levels"]["1000"]["n"] == 3  # the warm-up left out
    text = (report / "report.md").read_text()
    assert "Energy figures are **replayed**" in text
    assert "| metric | 1000 | 100000 | p (A12) | winner |" in text
    assert "## workload spin, phase inference" in text
    for name in ("box_energy_j.png", "box_duration_s.png", "energy_vs_quality.png"):
        assert (report / name).read_bytes()[:8] == PNG
    assert (report / "comparisons.csv").read_text().startswith("by,metric,level,n,mean")

    stats = cli("study", "stats", str(out / "runs.csv"), "--factor", "size", "--by", "workload",
                "phase", "--json")  # fmt: skip
    assert stats.returncode == 0 and "left out 4 warm-up or failed runs" in stats.stderr
    assert len(json.loads(stats.stdout)["comparisons"]) == len(comparisons)
