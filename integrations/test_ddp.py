"""Lightning DDP with two CPU processes (gloo): each rank meters its share, totals add up once.

Run as a subprocess script: under pytest, DDP's rank 1 would re-run the pytest
command instead of the training script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")

SCRIPT = Path(__file__).with_name("ddp_run.py")
HOST_W, DEVICE_W = 20.0, 100.0  # one host-level domain, one device per rank


def run(tmp_path: Path, devices: int) -> tuple[dict[str, float], list[dict[str, object]]]:
    trace = tmp_path / "power.csv"
    trace.write_text(
        "time_s,cpu_w,gpu:0_w,gpu:1_w\n"
        f"0,{HOST_W},{DEVICE_W},{DEVICE_W}\n3600,{HOST_W},{DEVICE_W},{DEVICE_W}\n"
    )
    out = tmp_path / f"out{devices}"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(trace), str(out), "--devices", str(devices)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    return json.loads((out / "metrics.json").read_text()), ranks


def test_two_ranks_meter_each_domain_once_and_log_the_sum(tmp_path: Path) -> None:
    metrics, ranks = run(tmp_path, devices=2)

    # Rank 0 meters the host and its own device, rank 1 only its device.
    assert ranks[0]["domains"] == ["cpu", "gpu:0"] and ranks[1]["domains"] == ["gpu:1"]
    # The whole machine draws host + 2 devices; counted once, not once per rank (2x).
    assert metrics["power/train_avg_w"] == pytest.approx(HOST_W + 2 * DEVICE_W, rel=0.05)
    # The job's total is the sum of the ranks' totals taken at the same collective...
    at_job = [r["distributed"]["own_total_j"] for r in ranks]  # type: ignore[index]
    job = ranks[0]["distributed"]["job_total_j"]  # type: ignore[index]
    assert job == pytest.approx(sum(at_job), rel=1e-9)
    # ...and each rank's final total only adds what it spent after it (teardown).
    own = [r["totals"]["energy_j"] for r in ranks]  # type: ignore[index]
    assert all(o >= a for o, a in zip(own, at_job, strict=True))
    assert sum(own) == pytest.approx(job, rel=0.1)
    assert metrics["energy/total_j"] <= job
    # Samples are summed too: 512 per epoch over both ranks.
    assert metrics["energy/train_j_per_sample"] == pytest.approx(
        metrics["energy/train_epoch_j"] / 512
    )
    assert (tmp_path / "out2" / "summary.json").exists()  # written by rank 0 only


def test_one_process_meters_the_same_machine_to_the_same_power(tmp_path: Path) -> None:
    metrics, ranks = run(tmp_path, devices=1)

    assert ranks[0]["domains"] == ["cpu", "gpu:0", "gpu:1"]
    assert metrics["power/train_avg_w"] == pytest.approx(HOST_W + 2 * DEVICE_W, rel=0.05)
    assert "distributed" not in ranks[0]


def test_two_nodes_each_meter_their_own_host_and_the_job_adds_them(tmp_path: Path) -> None:
    """num_nodes=2 on loopback, one process per node, each node with its own host power."""
    import os
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hosts = {0: 20.0, 1: 35.0}  # a different host draw per node: each must be counted once
    out = tmp_path / "nodes"
    launched = []
    for node, host_w in hosts.items():
        trace = tmp_path / f"node{node}.csv"
        trace.write_text(f"time_s,cpu_w,gpu:0_w\n0,{host_w},{DEVICE_W}\n3600,{host_w},{DEVICE_W}\n")
        env = {
            **os.environ,
            "NODE_RANK": str(node),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        command = [
            sys.executable,
            str(SCRIPT),
            str(trace),
            str(out),
            "--devices",
            "1",
            "--num-nodes",
            "2",
        ]
        launched.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    for process in launched:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    metrics = json.loads((out / "metrics.json").read_text())

    # Each node's only process is its local rank 0: it meters its own host and device.
    assert [r["domains"] for r in ranks] == [["cpu", "gpu:0"], ["cpu", "gpu:0"]]
    assert all("(local rank 0)" in r["distributed"]["share"] for r in ranks)
    # The job draws both hosts and both devices, each once.
    expected_w = sum(hosts.values()) + 2 * DEVICE_W
    assert metrics["power/train_avg_w"] == pytest.approx(expected_w, rel=0.05)
    at_job = [r["distributed"]["own_total_j"] for r in ranks]
    assert ranks[0]["distributed"]["job_total_j"] == pytest.approx(sum(at_job), rel=1e-9)
