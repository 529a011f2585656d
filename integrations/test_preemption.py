"""A real SIGTERM to a training process: it saves, ends cleanly, and the resumed run finishes.

The slow path of EnergyCheckpoint's pre-emption safety, in subprocesses.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")

from green_callbacks.testing import constant_power_trace

SCRIPT = Path(__file__).with_name("preempt_run.py")
POWER_W = 120.0


def run(trace: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), trace, str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_sigterm_midway_then_resume_finishes_with_all_steps_and_a_continuous_total(
    tmp_path: Path,
) -> None:
    trace = constant_power_trace(tmp_path, POWER_W)
    first = run(trace, tmp_path)
    deadline = time.monotonic() + 120
    while not (tmp_path / "ready").exists():
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the training process never reached step 3"
        time.sleep(0.02)
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=120)

    assert first.returncode == 0, output  # ended cleanly, not killed by the signal
    stopped = json.loads((tmp_path / "result.json").read_text())
    assert stopped["save_reason"] == "signal"
    assert 3 < stopped["global_step"] < 24  # stopped midway
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()

    second = run(trace, tmp_path, "--resume")
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    resumed = json.loads((tmp_path / "result-resumed.json").read_text())

    assert resumed["global_step"] == 3 * 8 and resumed["epochs"] == 3
    first_j = stopped["summary"]["totals"]["energy_j"]
    total_j = resumed["summary"]["totals"]["energy_j"]
    own_j = POWER_W * (
        resumed["summary"]["totals"]["duration_s"] - stopped["summary"]["totals"]["duration_s"]
    )
    assert total_j == pytest.approx(first_j + own_j, rel=0.02)  # the stopped run's energy, plus
    assert resumed["summary"]["resumed"] is True
