"""Cost of metering one window, per source, in microseconds per call.

A batch lap (``tracker.lap``, one call per batch), a step's figure
(``tracker.lap_j``: the lap's energy without its result, what the callbacks'
step figures use) and a batch window (``open`` + ``close``) take the per-batch
path: a clock read and arithmetic on the sampler thread's model. An epoch
window reads every sensor at both ends. The baseline is two empty Python
calls, the floor any callback hook pays.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from _common import arguments, emit, median, sources

from green_callbacks.core import EnergyTracker


def per_call_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return median(samples)


def measure_source(tracker: EnergyTracker, calls: int, repeats: int) -> dict[str, float]:
    def batch() -> None:
        tracker.close(tracker.open("batch", "train"))

    def epoch() -> None:
        tracker.close(tracker.open("epoch", "train"))

    lap_window = tracker.open("batch", "train")

    def lap() -> None:
        tracker.lap(lap_window)

    step_window = tracker.open("batch", "train")

    def step() -> None:
        tracker.lap_j(step_window)

    try:
        return {
            "batch_lap_us": per_call_us(lap, calls, repeats),
            "step_figure_us": per_call_us(step, calls, repeats),
            "batch_window_us": per_call_us(batch, calls, repeats),
            "epoch_window_us": per_call_us(epoch, calls // 10, repeats),
        }
    finally:
        tracker.stop()


def main() -> None:
    args = arguments(__doc__ or "")
    calls, repeats = (2_000, 3) if args.quick else (20_000, 7)

    def nothing() -> None:
        pass

    baseline = per_call_us(lambda: (nothing(), nothing()), calls, repeats)
    rows: dict[str, dict[str, float]] = {}
    for name, factory in sources().items():
        rows[name] = measure_source(EnergyTracker(factory()).start(), calls, repeats)
    table = [
        f"baseline (two empty calls): {baseline:.2f} us",
        f"{'source':<36}{'batch lap':>11}{'step figure':>13}{'batch window':>14}"
        f"{'epoch window':>14}",
        *(
            f"{n:<36}{r['batch_lap_us']:>11.2f}{r['step_figure_us']:>13.2f}"
            f"{r['batch_window_us']:>14.2f}{r['epoch_window_us']:>14.2f}"
            for n, r in rows.items()
        ),
        "(us per call: lap = tracker.lap(batch); step figure = tracker.lap_j(batch); "
        "window = open + close)",
        "nvml: skipped, no NVIDIA GPU on this machine (a batch window never reads the sensor;",
        "      an epoch window adds one nvmlDeviceGetTotalEnergyConsumption call per GPU)",
    ]
    emit({"baseline_us": baseline, "sources": rows}, table, args.json)


if __name__ == "__main__":
    main()
