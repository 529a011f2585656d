"""Real models served in real time: a torch CNN through the command line, a Keras model directly.

A replayed constant-power trace stands in for the sensor, so the right energy of
any period is that power times its duration; time, queueing and the models'
own service times are real.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from green_callbacks.serving import ServeConfig, batch_runner, parse_policy, parse_stream, serve
from green_callbacks.testing import constant_power_trace

POWER_W = 40.0


def fastest_service_ms(run, size: int = 1, calls: int = 20) -> float:
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        run(size)
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


def check_consistent(result, service_ms: float) -> None:
    assert result.served == result.requests and not result.capped
    assert result.energy_j == pytest.approx(POWER_W * result.duration_s, rel=1e-6)
    assert result.busy_j <= result.energy_j + 1e-9
    assert result.latency_min_ms >= service_ms * 0.9  # nobody is answered faster than the model
    assert result.latency_min_ms <= result.latency_p50_ms <= result.latency_p99_ms
    assert result.latency_p99_ms <= result.latency_max_ms
    assert result.throughput_rps == pytest.approx(result.served / result.duration_s)
    assert result.energy_kind == "replayed"


def test_a_torch_model_through_serve_sweep(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    meter = constant_power_trace(tmp_path, POWER_W)
    out = tmp_path / "sweep"
    command = [
        sys.executable, "-m", "green_callbacks.cli", "serve-sweep", "--model", "digits",
        "--rates", "50", "200", "--policies", "fixed:1", "maxwait:8/20", "--requests", "120",
        "--idle-s", "0.2", "--warmup", "2", "--slo-ms", "50", "--meter", meter, "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "[4/4] regular:200 maxwait:8/20" in done.stderr  # progress, one line per configuration
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["stream"], r["policy"]) for r in rows] == [
        ("regular:50", "fixed:1"), ("regular:50", "maxwait:8/20"),
        ("regular:200", "fixed:1"), ("regular:200", "maxwait:8/20"),
    ]  # fmt: skip
    for row in rows:
        assert float(row["energy_j"]) == pytest.approx(POWER_W * float(row["duration_s"]), rel=1e-6)
        assert float(row["idle_w"]) == pytest.approx(POWER_W, rel=1e-6)
        # A constant trace has no power above idle: every joule is the idle machine's.
        assert float(row["j_per_request_above_idle"]) == pytest.approx(0.0, abs=1e-6)
    fixed = {r["stream"]: float(r["j_per_request"]) for r in rows if r["policy"] == "fixed:1"}
    # Idle included, joules per request fall as the rate rises: the same power, more requests.
    assert fixed["regular:200"] < fixed["regular:50"]
    assert (out / "joules_vs_latency.png").stat().st_size > 10_000
    recommendation = json.loads((out / "recommendation.json").read_text())
    assert {r["stream"] for r in recommendation} == {"regular:50", "regular:200"}
    assert all(r["chosen"] in ("fixed:1", "maxwait:8/20") for r in recommendation)
    assert "use " in done.stdout and "J/request" in done.stdout


def test_a_keras_model_at_two_rates(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10)])  # fmt: skip
    run = batch_runner(model, np.zeros(64, "float32"))
    service_ms = fastest_service_ms(run)
    config = ServeConfig(requests=60, warmup_batches=2, idle_s=0.2, sample_interval_s=0.05,
                         meters=constant_power_trace(tmp_path, POWER_W))  # fmt: skip
    results = {
        rate: serve(run, parse_stream(f"poisson:{rate}:1"), parse_policy("maxwait:8/30"), config)
        for rate in (30, 150)
    }
    for result in results.values():
        check_consistent(result, service_ms)
        assert result.latency_max_ms <= 30.0 + 2 * service_ms + 50.0  # T + service, with slack
    # More requests arrive within the 30 ms wait at 150/s than at 30/s: larger batches.
    assert results[150].mean_batch > results[30].mean_batch
