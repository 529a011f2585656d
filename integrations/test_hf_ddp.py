"""Hugging Face Trainer under torchrun, two CPU processes (gloo): each rank meters its share,
the figures are summed once, and only rank 0 writes the summary (as Lightning DDP does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from green_callbacks.core.card import energy_card

pytest.importorskip("transformers", reason="needs the 'hf' extra")

SCRIPT = Path(__file__).with_name("hf_ddp_run.py")
HOST_W, DEVICE_W = 20.0, 100.0  # one host-level domain, one device per rank


def launch(tmp_path: Path, *flags: str) -> tuple[list[dict[str, Any]], list[Any], str]:
    """Two ranks under torchrun: each rank's record, rank 0's log history, and stderr."""
    trace = tmp_path / "power.csv"
    trace.write_text(
        "time_s,cpu_w,gpu:0_w,gpu:1_w\n"
        f"0,{HOST_W},{DEVICE_W},{DEVICE_W}\n3600,{HOST_W},{DEVICE_W},{DEVICE_W}\n"
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(SCRIPT), str(trace), str(out), *flags]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return ranks, json.loads((out / "logs.json").read_text()), done.stderr


def test_two_ranks_meter_each_domain_once_and_log_the_sum(tmp_path: Path) -> None:
    ranks, logs, _ = launch(tmp_path)
    out = tmp_path / "out"

    # Rank 0 meters the host and its own device, rank 1 only its device.
    assert ranks[0]["domains"] == ["cpu", "gpu:0"] and ranks[1]["domains"] == ["gpu:1"]
    # The machine draws host + 2 devices: counted once, not once per rank (the 2x of
    # other trackers under torchrun).
    power = [entry["power/train_avg_w"] for entry in logs if "power/train_avg_w" in entry]
    assert power == pytest.approx([HOST_W + 2 * DEVICE_W] * 2, rel=0.05)
    # The job's total is the sum of the ranks' totals at the same collective.
    at_job = [r["distributed"]["own_total_j"] for r in ranks]
    assert ranks[0]["distributed"]["job_total_j"] == pytest.approx(sum(at_job), rel=1e-9)
    # Samples are summed too: 512 per epoch over both ranks.
    epoch = next(e for e in logs if "energy/train_j_per_sample" in e)
    assert epoch["energy/train_j_per_sample"] == pytest.approx(epoch["energy/train_epoch_j"] / 512)
    assert (out / "summary.json").exists()  # written by rank 0 only
    # the model card rank 0 would attach gives the job's energy, not rank 0's share
    job_kwh = ranks[0]["distributed"]["job_total_j"] / 3.6e6
    card = energy_card(json.loads((out / "summary.json").read_text()))
    assert f"| training energy | {job_kwh:.3g} kWh" in card and "| processes | 2," in card
    assert json.loads((out / "summary.json").read_text())["distributed"]["share"].startswith(
        "rank 0"
    )


def test_ranks_that_all_think_they_are_local_rank_0_still_count_each_domain_once(
    tmp_path: Path,
) -> None:
    ranks, logs, stderr = launch(tmp_path, "--local-rank-unset")

    # Both claim the host and gpu:0; the real gloo exchange at start finds it, rank 0 keeps them.
    assert ranks[0]["domains"] == ["cpu", "gpu:0"] and ranks[1]["domains"] == []
    assert stderr.count("DistributedWarning") == 2 and "ranks 0, 1 all meter cpu, gpu:0" in stderr
    power = [entry["power/train_avg_w"] for entry in logs if "power/train_avg_w" in entry]
    assert power == pytest.approx([HOST_W + DEVICE_W] * 2, rel=0.05)  # not 2 x 120 W
