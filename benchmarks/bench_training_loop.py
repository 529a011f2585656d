"""Slowdown of a small PyTorch training loop metered per batch, as a ratio.

The loop trains an MLP (64 -> 256 -> 256 -> 10, batch 64, SGD) on synthetic
digits-sized data, on one CPU thread. Each block times the same number of
steps unmetered (no tracker at all) and metered (a tracker started for the
block, its sampler thread running, a batch window opened and closed around
every step; start and stop are outside the timing). Blocks alternate order.
Noise on a shared 2-core machine only ever adds time, so the headline slowdown
compares the fastest decile of metered blocks with the fastest decile of
unmetered ones; the median of adjacent-pair ratios and its quartiles are shown
as the noise check.
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


def time_steps(step: Callable[[], None], steps: int, tracker: EnergyTracker | None) -> float:
    start = time.perf_counter()
    if tracker is None:
        for _ in range(steps):
            step()
    else:
        for _ in range(steps):
            batch = tracker.open("batch", "train")
            step()
            tracker.close(batch)
    return time.perf_counter() - start


def metered_block(step: Callable[[], None], steps: int, meters: list[Any]) -> float:
    """One block metered per batch; the tracker (and its sampler thread) runs only here."""
    tracker = EnergyTracker(meters).start()
    try:
        return time_steps(step, steps, tracker)
    finally:
        tracker.stop()


def paired_ratios(
    step: Callable[[], None], factory: Callable[[], list[Any]], steps: int, blocks: int
) -> tuple[list[float], list[float], list[float]]:
    """Times of unmetered and metered adjacent blocks (alternating order) and their ratios."""
    base, metered, ratios = [], [], []
    for block in range(blocks):
        if block % 2 == 0:
            b = time_steps(step, steps, None)
            m = metered_block(step, steps, factory())
        else:
            m = metered_block(step, steps, factory())
            b = time_steps(step, steps, None)
        base.append(b)
        metered.append(m)
        ratios.append(m / b)
    return base, metered, ratios


def main() -> None:
    args = arguments(__doc__ or "")
    steps, blocks = (50, 6) if args.quick else (250, 60)
    step = make_step()
    for _ in range(500):  # warm up allocator and kernels
        step()
    results: dict[str, dict[str, float]] = {}
    for name, factory in sources().items():
        base, metered, ratios = paired_ratios(step, factory, steps, blocks)
        ratios.sort()
        fastest = quantile(metered, 0.1) / quantile(base, 0.1)
        step_us = median(base) / steps * 1e6
        results[name] = {
            "step_us": step_us,
            "slowdown_ratio_median_pair": median(ratios),
            "ratio_q1": ratios[len(ratios) // 4],
            "ratio_q3": ratios[3 * len(ratios) // 4],
            "slowdown_ratio_fastest_decile": fastest,
            "overhead_us_per_step": (fastest - 1) * step_us,
        }
    table = [
        f"{'source':<34}{'step us':>9}{'slowdown':>10}{'overhead us/step':>18}"
        f"{'median pair':>13}{'pair IQR':>20}",
        *(
            f"{n:<34}{r['step_us']:>9.1f}{pct(r['slowdown_ratio_fastest_decile']):>10}"
            f"{r['overhead_us_per_step']:>18.2f}{pct(r['slowdown_ratio_median_pair']):>13}"
            f"  [{pct(r['ratio_q1'])}, {pct(r['ratio_q3'])}]"
            for n, r in results.items()
        ),
        "slowdown: fastest-decile metered block / fastest-decile unmetered block - 1",
    ]
    emit({"steps_per_block": steps, "blocks": blocks, "sources": results}, table, args.json)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.2f}%"


if __name__ == "__main__":
    main()
