"""``green-callbacks report`` against the number of epochs: memory stays bounded at 10^6.

A Lightning-style ``metrics.csv`` (two rows an epoch: the training row with
its energy, the validation row with its accuracy, as ``CSVLogger`` writes) is
written with 10^3 to 10^6 epochs, and ``green-callbacks report`` is run on it in
a fresh process; its peak resident memory (``ru_maxrss`` of the child) and
wall time are the figures. The baseline, in the same run, is the same
interpreter importing the report's modules and matplotlib and reading nothing: the ratio is
what the epochs add.

    .venv/bin/python benchmarks/bench_report.py [--quick] [--json]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import arguments, emit

EPOCHS = (1000, 10_000, 100_000, 1_000_000)
QUICK_EPOCHS = (1000, 10_000, 100_000)
TARGET_MIB = 500e6 / 2**20
"""The issue's target: the report of a 10^6-epoch CSV under 500 MB."""
BASELINE = "import matplotlib.pyplot, green_callbacks.analysis.report, green_callbacks.analysis.run"
"""What the report command imports anyway: the baseline the epochs are compared with."""


def write_log(path: Path, epochs: int) -> None:
    """A CSV log of ``epochs`` epochs: accuracy rising to a plateau, 50 J an epoch."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("epoch,step,train_loss,energy/train_epoch_j,energy/total_j,val_acc\n")
        for epoch in range(epochs):
            accuracy = 0.9 - 0.4 / (1 + epoch / 10)
            handle.write(f"{epoch},{epoch * 10},{1 - accuracy:.5f},50.0,{(epoch + 1) * 55.0},\n")
            handle.write(f"{epoch},{epoch * 10},,,,{accuracy:.5f}\n")


def run_child(code: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of one child process."""
    started = time.perf_counter()
    done = subprocess.run(code, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{code} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return peak_of_last_child(), wall


_SEEN_KIB = 0


def peak_of_last_child() -> float:
    """``ru_maxrss`` of the children is their maximum so far: children run largest last."""
    global _SEEN_KIB
    _SEEN_KIB = max(_SEEN_KIB, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return _SEEN_KIB / 1024


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    sizes = QUICK_EPOCHS if args.quick else EPOCHS
    folder = Path(tempfile.mkdtemp(prefix="gc-bench-report-"))
    baseline_mib, _ = run_child([sys.executable, "-c", BASELINE])
    result: dict[str, dict[str, float]] = {}
    for epochs in sizes:  # smallest first: RUSAGE_CHILDREN keeps the maximum
        log = folder / f"e{epochs}" / "metrics.csv"
        log.parent.mkdir()
        write_log(log, epochs)
        command = [sys.executable, "-m", "green_callbacks.cli", "report", str(log.parent),
                   "--out", str(folder / f"report_{epochs}")]  # fmt: skip
        peak, wall = run_child(command)
        result[str(epochs)] = {"peak_mib": peak, "wall_s": wall, "baseline_mib": baseline_mib}
    lines = [f"{'epochs':>9}{'peak MiB':>10}{'over imports':>14}{'wall s':>8}"]
    lines += [f"{e:>9}{r['peak_mib']:>10.0f}{r['peak_mib'] / baseline_mib:>13.2f}x"
              f"{r['wall_s']:>8.1f}" for e, r in result.items()]  # fmt: skip
    largest = result[str(sizes[-1])]["peak_mib"]
    verdict = "within" if largest < TARGET_MIB else "OVER"
    lines.append(f"(the imports alone: {baseline_mib:.0f} MiB; {sizes[-1]} epochs: {largest:.0f} "
                 f"MiB, {verdict} the 500 MB ({TARGET_MIB:.0f} MiB) target)")  # fmt: skip
    emit(result, lines, args.json)


if __name__ == "__main__":
    main()
