"""tf_keras under MultiWorkerMirroredStrategy, two workers on loopback (CPU): each worker
meters its own host, the figures are summed over the workers once, the chief writes.

Keras 3's fit does not run under this strategy here (it fails with "Attempt to convert a
value (PerReplica...)" before any callback), so the multi-worker path is tf_keras's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tf_keras")

SCRIPT = Path(__file__).with_name("keras_multiworker_run.py")
HOSTS_W = (20.0, 35.0)  # each worker's host draws its own power, from its own replayed trace


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_two_workers_each_meter_their_host_and_the_job_adds_them(tmp_path: Path) -> None:
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in HOSTS_W]}
    out = tmp_path / "out"
    workers = []
    for index, host_w in enumerate(HOSTS_W):
        trace = tmp_path / f"worker{index}.csv"
        trace.write_text(f"time_s,cpu_w\n0,{host_w}\n3600,{host_w}\n")
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "CUDA_VISIBLE_DEVICES": ""}
        workers.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), str(trace), str(out), str(index)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
    records = [json.loads((out / f"worker{i}.json").read_text()) for i in range(2)]

    assert [r["domains"] for r in records] == [["cpu"], ["cpu"]]  # each its own host
    shares = [r["summary"]["distributed"]["share"] for r in records]
    assert shares[0].startswith("worker 0 of 2") and shares[1].startswith("worker 1 of 2")
    # Both workers log the job's figures: both hosts, each once, in every epoch (the first
    # too, which the workers start at different moments: each worker's power is its own).
    for record in records:
        power = record["history"]["power/train_avg_w"]
        assert power == pytest.approx([sum(HOSTS_W)] * 3, rel=0.05)
    own = [r["summary"]["distributed"]["own_total_j"] for r in records]
    assert records[0]["summary"]["distributed"]["job_total_j"] == pytest.approx(sum(own), rel=1e-9)
    # Only the chief writes the summary and the run folder.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["distributed"]["share"].startswith("worker 0")
    assert [p.name for p in (out / "run").iterdir()] == ["version_0"]  # one folder for the job
    assert len((out / "run" / "version_0" / "history.jsonl").read_text().splitlines()) == 3
