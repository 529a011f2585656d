"""Slowdown of a small PyTorch training loop metered per batch, as a ratio.

The loop trains an MLP (64 -> 256 -> 256 -> 10, batch 64, SGD) on synthetic
digits-sized data, on one CPU thread. Each block times the same number of
steps unmetered (no tracker at all) and metered (a tracker started for the
block, its sampler thread running, a batch window opened and closed around
every step; start and stop are outside the timing). Blocks alternate order.
The headline is CPU time of the whole process (training thread plus the
sampler thread): every cycle metering costs, but not the time other processes
take from a shared machine, which makes wall-clock ratios swing by several
percent. Noise only ever adds time, so each ratio compares the fastest decile
of metered blocks with the fastest decile of unmetered ones; the training
thread's CPU time and wall time are shown beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from _common import arguments, emit, median, sources

from green_callbacks._optional import require
from green_callbacks.core import EnergyTracker


def make_step() -> Callable[[], None]:
    torch = require("torch", "torch", purpose="The training-loop benchmark")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 64)
    y = torch.randint(0, 10, (64,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


Timing = tuple[float, float, float]
"""(wall s, CPU s of the training thread, CPU s of the whole process)."""


def time_steps(step: Callable[[], None], steps: int, tracker: EnergyTracker | None) -> Timing:
    wall, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
    if tracker is None:
        for _ in range(steps):
            step()
    else:
        for _ in range(steps):
            batch = tracker.open("batch", "train")
            step()
            tracker.close(batch)
    return (
        time.perf_counter() - wall,
        time.thread_time() - thread,
        time.process_time() - process,
    )


def metered_block(step: Callable[[], None], steps: int, meters: list[Any]) -> Timing:
    """One block metered per batch; the tracker (and its sampler thread) runs only here."""
    tracker = EnergyTracker(meters).start()
    try:
        return time_steps(step, steps, tracker)
    finally:
        tracker.stop()


def blocks_of(
    step: Callable[[], None], factory: Callable[[], list[Any]], steps: int, blocks: int
) -> tuple[list[Timing], list[Timing]]:
    """Unmetered and metered blocks, adjacent, alternating which runs first."""
    base, metered = [], []
    for block in range(blocks):
        if block % 2 == 0:
            base.append(time_steps(step, steps, None))
            metered.append(metered_block(step, steps, factory()))
        else:
            metered.append(metered_block(step, steps, factory()))
            base.append(time_steps(step, steps, None))
    return base, metered


def ratio(metered: list[Timing], base: list[Timing], column: int) -> float:
    """Fastest-decile metered / fastest-decile unmetered, for one timing column."""
    return quantile([t[column] for t in metered], 0.1) / quantile([t[column] for t in base], 0.1)


def main() -> None:
    args = arguments(__doc__ or "")
    steps, blocks = (50, 6) if args.quick else (250, 40)
    step = make_step()
    for _ in range(500):  # warm up allocator and kernels
        step()
    results: dict[str, dict[str, float]] = {}
    for name, factory in sources().items():
        base, metered = blocks_of(step, factory, steps, blocks)
        step_us = median([t[2] for t in base]) / steps * 1e6
        process = ratio(metered, base, 2)
        results[name] = {
            "step_cpu_us": step_us,
            "slowdown_ratio_cpu": process,
            "slowdown_ratio_training_thread_cpu": ratio(metered, base, 1),
            "slowdown_ratio_wall": ratio(metered, base, 0),
            "overhead_cpu_us_per_step": (process - 1) * step_us,
        }
    table = [
        f"{'source':<34}{'step CPU us':>12}{'CPU slowdown':>14}{'us/step':>9}"
        f"{'train thread':>14}{'wall':>9}",
        *(
            f"{n:<34}{r['step_cpu_us']:>12.1f}{pct(r['slowdown_ratio_cpu']):>14}"
            f"{r['overhead_cpu_us_per_step']:>9.2f}"
            f"{pct(r['slowdown_ratio_training_thread_cpu']):>14}{pct(r['slowdown_ratio_wall']):>9}"
            for n, r in results.items()
        ),
        "CPU slowdown: process CPU time (training + sampler threads), metered / unmetered - 1,",
        "fastest decile of blocks each; 'train thread' counts the training thread only; 'wall'",
        "is wall-clock time, which on a shared machine also moves with other processes.",
    ]
    emit({"steps_per_block": steps, "blocks": blocks, "sources": results}, table, args.json)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.2f}%"


if __name__ == "__main__":
    main()
