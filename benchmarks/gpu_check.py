"""The GPU paths checked on a real NVIDIA GPU, printed as one table (docs/measurement.md).

Run it where a GPU is at hand (nothing in CI depends on it):

    .venv/bin/python benchmarks/gpu_check.py [--quick] [--json]

1. NVML's energy counter against its power readings integrated over the same
   windows of 10 s or more, under a matrix-multiply load (the Zeus authors
   report agreement within 1 %).
2. A training epoch metered per batch with and without ``sync_cuda``: the
   batches' sum against the epoch's own figure (asynchronous kernels make
   unsynchronised batch figures wrong; the epoch figure is always synchronised).
3. The metering's overhead on a GPU training loop: metered over unmetered time.
4. torchao int8 quantization and structural pruning measured on the GPU
   (inference J/sample before and after, from the compression tools).
5. With two GPUs or more: a two-process DDP job, each rank metering its own GPU,
   the job's total against the sum of the ranks.

Each check is one row; a check that fails prints its error in its row and the
others still run. Without an NVIDIA GPU it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

NO_GPU = 2


def gpu_or_exit() -> Any:
    """torch with a CUDA GPU and a working NVML, or a clear message and exit status 2."""
    try:
        import pynvml
        import torch
    except ImportError as err:
        print(f"gpu_check: needs torch and nvidia-ml-py ({err}); nothing checked", file=sys.stderr)
        raise SystemExit(NO_GPU) from err
    if not torch.cuda.is_available():
        print(
            "gpu_check: no NVIDIA GPU visible to torch (torch.cuda.is_available() is False); "
            "run this on a machine with one; nothing checked",
            file=sys.stderr,
        )
        raise SystemExit(NO_GPU)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        print(f"gpu_check: NVML cannot start ({err}); nothing checked", file=sys.stderr)
        raise SystemExit(NO_GPU) from err
    return torch


def load(torch: Any, seconds: float) -> None:
    """Keep GPU 0 busy with matrix multiplies for about ``seconds``."""
    a = torch.randn(4096, 4096, device="cuda")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(10):
            a = torch.tanh(a @ a)
        torch.cuda.synchronize()


def _powers(handle: Any, stop: Any, into: list[tuple[float, float]]) -> None:
    """Append (time, power in W) every 20 ms until ``stop`` is set."""
    import pynvml

    while not stop.is_set():
        into.append((time.monotonic(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3))
        time.sleep(0.02)


def counter_against_power(torch: Any, windows: int, window_s: float) -> dict[str, Any]:
    """Check 1: counter deltas against integrated power, per window."""
    import threading
    from itertools import pairwise

    import pynvml

    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    gaps = []
    for _ in range(windows):
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        start = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ
        thread = threading.Thread(target=_powers, args=(handle, stop, samples))
        thread.start()
        load(torch, window_s)
        stop.set()
        thread.join()
        counter_j = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - start) / 1e3
        power_j = sum(0.5 * (p0 + p1) * (t1 - t0) for (t0, p0), (t1, p1) in pairwise(samples))
        gaps.append(abs(power_j - counter_j) / counter_j)
    worst = max(gaps)
    return {
        "figure": f"worst gap {worst:.2%} over {windows} windows of {window_s:g} s",
        "target": "< 1 %",
        "ok": worst < 0.01,
    }


def sync_cuda_batches(torch: Any, steps: int) -> dict[str, Any]:
    """Check 2: sum of batch windows over the epoch window, with and without synchronising."""
    from green_callbacks.core import EnergyTracker

    model = torch.nn.Sequential(
        torch.nn.Linear(2048, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10)
    ).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(512, 2048, device="cuda"), torch.randint(0, 10, (512,), device="cuda")
    ratios = {}
    with EnergyTracker("nvml", sample_interval_s=0.02) as tracker:
        for sync in (False, True):
            torch.cuda.synchronize()
            epoch = tracker.open("epoch", "train")
            batch, summed = tracker.open("batch", "train"), 0.0
            for _ in range(steps):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                if sync:
                    torch.cuda.synchronize()
                summed += tracker.lap(batch).energy_j
            torch.cuda.synchronize()
            ratios[sync] = summed / tracker.close(epoch).energy_j
    return {
        "figure": f"batches / epoch: {ratios[False]:.3f} unsynchronised, "
        f"{ratios[True]:.3f} with sync_cuda",
        "target": "1.000 with sync_cuda",
        "ok": abs(ratios[True] - 1.0) < 0.02,
    }


def overhead(torch: Any, steps: int, rounds: int) -> dict[str, Any]:
    """Check 3: a GPU training loop metered per batch against the same loop unmetered."""
    from green_callbacks.core import EnergyTracker

    model = torch.nn.Linear(4096, 4096).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(256, 4096, device="cuda")

    def loop(tracker: Any | None) -> float:
        batch = tracker.open("batch", "train") if tracker else None
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
            if tracker:
                tracker.lap(batch)
        torch.cuda.synchronize()
        return time.perf_counter() - start

    plain, metered = [], []
    with EnergyTracker("nvml") as tracker:
        for _ in range(rounds):  # interleaved
            plain.append(loop(None))
            metered.append(loop(tracker))
    ratio = statistics.median(metered) / statistics.median(plain) - 1.0
    return {
        "figure": f"{ratio:+.2%} time per step (median of {rounds} rounds)",
        "target": "< 1 %",
        "ok": ratio < 0.01,
    }


def compression(torch: Any, quick: bool) -> dict[str, Any]:
    """Check 4: torchao int8 and structural pruning, measured on the GPU."""
    from green_callbacks.compress import Measurement, torch_models
    from green_callbacks.lightning.demo import DigitsCNN, digits_loaders

    measure = Measurement(
        batch_size=256, meters="nvml", rounds=3 if quick else 5, min_round_s=0.5 if quick else 2.0
    )
    _, val = digits_loaders(batch_size=64, seed=0)
    rows = []
    cnn = DigitsCNN(channels=32).cuda()
    pruned = torch_models.prune(cnn, ratio=0.5, eval_data=val, measure=measure).report
    mlp = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10)
    ).cuda()
    quantized = torch_models.quantize(
        mlp, mode="int8_weight_only", eval_data=val, measure=measure
    ).report
    for report in (pruned, quantized):
        a, b = report.original, report.compressed
        rows.append(
            f"{report.technique}: {a.j_per_sample * 1e3:.3g} -> "
            f"{b.j_per_sample * 1e3:.3g} mJ/sample"
        )
    return {
        "figure": "; ".join(rows),
        "target": "measured, labelled measured",
        "ok": quantized.compressed.energy_kind == "measured",
    }


def ddp_share(torch: Any) -> dict[str, Any]:
    """Check 5: two GPUs, two ranks: each meters its own GPU; the job total is their sum."""
    if torch.cuda.device_count() < 2:
        return {"figure": f"skipped: {torch.cuda.device_count()} GPU", "target": "-", "ok": None}
    import subprocess
    import tempfile
    from pathlib import Path

    out = Path(tempfile.mkdtemp(prefix="gpu-ddp-"))
    script = Path(__file__).resolve().parent / "gpu_ddp_run.py"
    done = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        return {"figure": f"error: {done.stderr.strip()[-300:]}", "target": "-", "ok": False}
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    own = [r["summary"]["distributed"]["own_total_j"] for r in ranks]
    job = ranks[0]["summary"]["distributed"]["job_total_j"]
    gpus = [sorted(d for d in r["domains"] if d.startswith("gpu")) for r in ranks]
    gap = abs(job - sum(own)) / job
    return {
        "figure": f"rank GPUs {gpus}; job {job:.4g} J vs ranks {own[0]:.4g} + {own[1]:.4g} J "
        f"({gap:.2%})",
        "target": "one GPU per rank, sum within 1 %",
        "ok": gpus[0] != gpus[1] and all(len(g) == 1 for g in gpus) and gap < 0.01,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows and fewer rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch = gpu_or_exit()
    checks: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (
            "NVML counter vs power integration",
            lambda: counter_against_power(torch, 2 if args.quick else 5, 10.0),
        ),
        (
            "per-batch figures, sync_cuda",
            lambda: sync_cuda_batches(torch, 50 if args.quick else 200),
        ),
        ("metering overhead, GPU loop", lambda: overhead(torch, 50, 5 if args.quick else 15)),
        ("compression on the GPU", lambda: compression(torch, args.quick)),
        ("two-GPU DDP share rule", lambda: ddp_share(torch)),
    ]
    rows = []
    for name, check in checks:
        print(f"checking: {name} ...", file=sys.stderr, flush=True)
        try:
            row = check()
        except Exception as err:  # one failing check never hides the others
            traceback.print_exc(file=sys.stderr)
            row = {"figure": f"error: {type(err).__name__}: {err}", "target": "-", "ok": False}
        rows.append({"check": name, **row})
    gpu = torch.cuda.get_device_name(0)
    if args.json:
        print(json.dumps({"gpu": gpu, "checks": rows}, indent=2))
        return
    print(f"GPU: {gpu}")
    for row in rows:
        mark = {True: "ok", False: "FAIL", None: "-"}[row["ok"]]
        print(f"{row['check']:36} {mark:5} {row['figure']}  (target {row['target']})")


if __name__ == "__main__":
    main()
