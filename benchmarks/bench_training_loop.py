"""Slowdown of a small PyTorch training loop metered per batch, as a ratio.

The loop trains an MLP (64 -> 256 -> 256 -> 10, batch 64, SGD) on synthetic
digits-sized data, on one CPU thread. Each block times the same number of
steps unmetered (no tracker at all) and metered with each source (a tracker
started for the block, its sampler thread running, and per step one
``tracker.lap(batch)`` call, as the framework callbacks meter batches, or an
``open``/``close`` pair for comparison; start and stop are outside the
timing), all interleaved inside the block, in reversed order every other block.

Two figures, because a shared 2-core VM moves whole-loop timings by about 2 %
between identical blocks, more than the cost being measured:

- *attributed*: what metering itself spends, measured directly: the time
  inside the per-batch calls (timed around each call) plus the extra CPU time
  of the process's other threads (the sampler), over the unmetered loop's time.
- *CPU slowdown*: CPU time of the whole process (training thread plus the
  sampler thread), metered over unmetered: every cycle metering costs, direct
  or indirect (caches), but not the time other processes take from a shared
  machine. Noise only ever adds time, so each ratio compares the fastest
  decile of metered blocks with the fastest decile of unmetered ones; the
  training thread's CPU time and wall time are shown beside it.
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


Timing = tuple[float, float, float, float]
"""(wall s, CPU s of the training thread, CPU s of the whole process, s inside metering calls)."""


def time_steps(
    step: Callable[[], None], steps: int, tracker: EnergyTracker | None, style: str = "lap"
) -> Timing:
    clock = time.perf_counter
    inside = 0.0
    wall, thread, process = clock(), time.thread_time(), time.process_time()
    if tracker is None:
        for _ in range(steps):
            step()
    elif style == "lap":  # one call per batch, as the framework callbacks meter
        batch = tracker.open("batch", "train")
        for _ in range(steps):
            step()
            t = clock()
            tracker.lap(batch)
            inside += clock() - t
    else:
        for _ in range(steps):
            t = clock()
            batch = tracker.open("batch", "train")
            inside += clock() - t
            step()
            t = clock()
            tracker.close(batch)
            inside += clock() - t
    return (clock() - wall, time.thread_time() - thread, time.process_time() - process, inside)


def metered_block(step: Callable[[], None], steps: int, meters: list[Any], style: str) -> Timing:
    """One block metered per batch; the tracker (and its sampler thread) runs only here."""
    tracker = EnergyTracker(meters).start()
    try:
        return time_steps(step, steps, tracker, style)
    finally:
        tracker.stop()


def interleaved_blocks(
    step: Callable[[], None], factories: dict[str, Callable[[], list[Any]]], steps: int, blocks: int
) -> dict[str | None, list[Timing]]:
    """Per block, the unmetered loop and each source, order reversed every other block.

    Interleaving every variant inside each block makes slow drift of a shared
    machine hit all of them alike.
    """
    variants: list[str | None] = [None, *factories]
    timings: dict[str | None, list[Timing]] = {v: [] for v in variants}
    for block in range(blocks):
        for variant in variants if block % 2 == 0 else variants[::-1]:
            if variant is None:
                timings[None].append(time_steps(step, steps, None))
            else:
                style = "open/close" if "open/close" in variant else "lap"
                timings[variant].append(metered_block(step, steps, factories[variant](), style))
    return timings


def ratio(metered: list[Timing], base: list[Timing], column: int, q: float = 0.1) -> float:
    """Quantile ``q`` of metered / the same quantile of unmetered, for one timing column."""
    return quantile([t[column] for t in metered], q) / quantile([t[column] for t in base], q)


def main() -> None:
    args = arguments(__doc__ or "")
    steps, blocks = (50, 4) if args.quick else (200, 60)
    step = make_step()
    for _ in range(500):  # warm up allocator and kernels
        step()
    variants = {f"{name} (lap)": factory for name, factory in sources().items()}
    variants["replay (open/close)"] = sources()["replay"]
    timings = interleaved_blocks(step, variants, steps, blocks)
    base = timings.pop(None)
    step_us = median([t[2] for t in base]) / steps * 1e6
    results: dict[str, dict[str, float]] = {}
    for name, metered in timings.items():
        assert name is not None
        process = ratio(metered, base, 2)
        attributed = attributed_overhead(metered, base) / (step_us * 1e-6 * steps)
        results[name] = {
            "attributed_slowdown_ratio": 1 + attributed,
            "slowdown_ratio_cpu": process,
            "slowdown_ratio_cpu_median": ratio(metered, base, 2, 0.5),
            "slowdown_ratio_training_thread_cpu": ratio(metered, base, 1),
            "slowdown_ratio_wall": ratio(metered, base, 0),
            "overhead_cpu_us_per_step": (process - 1) * step_us,
        }
    table = [
        f"unmetered step: {step_us:.1f} us CPU (median of {blocks} blocks of {steps} steps)",
        f"{'source (per-batch call)':<36}{'attributed':>11}{'CPU slowdown':>14}{'us/step':>9}"
        f"{'(median)':>10}{'train thread':>14}{'wall':>9}",
        *(
            f"{n:<36}{pct(r['attributed_slowdown_ratio']):>11}"
            f"{pct(r['slowdown_ratio_cpu']):>14}{r['overhead_cpu_us_per_step']:>9.2f}"
            f"{pct(r['slowdown_ratio_cpu_median']):>10}"
            f"{pct(r['slowdown_ratio_training_thread_cpu']):>14}{pct(r['slowdown_ratio_wall']):>9}"
            for n, r in results.items()
        ),
        "attributed: time inside the metering calls plus the extra CPU time of other threads",
        "(the sampler), median per block, over the unmetered loop's time; it misses indirect",
        "effects (caches), which the CPU slowdown includes along with the machine's noise.",
        "CPU slowdown: process CPU time (training + sampler threads), metered / unmetered - 1,",
        "fastest decile of blocks each (median beside it); 'train thread' counts the training",
        "thread only; 'wall' is wall-clock time, which on a shared machine also moves with",
        "other processes.",
    ]
    emit(
        {"steps_per_block": steps, "blocks": blocks, "step_cpu_us": step_us, "sources": results},
        table,
        args.json,
    )


def attributed_overhead(metered: list[Timing], base: list[Timing]) -> float:
    """Median seconds per block spent metering: inside the calls, plus other threads' CPU."""
    other_base = median([t[2] - t[1] for t in base])
    return median([t[3] for t in metered]) + max(
        median([t[2] - t[1] for t in metered]) - other_base, 0.0
    )


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.2f}%"


if __name__ == "__main__":
    main()
