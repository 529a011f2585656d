"""Slowdown of Lightning and Keras ``fit`` with EnergyCallback(granularity="batch").

Each framework fits the same small MLP (64 -> 128 -> 10, batch 32, 8192
synthetic digits-sized samples, one epoch of 256 steps, one CPU thread) with
and without the callback (``meters="auto"``; ``GC_BENCH_GRANULARITY=epoch``
to compare the default granularity), interleaved, order reversed every other
repeat. Each fit includes the callback's fixed cost (detecting sources,
starting the sampler, the summary), which a longer fit amortises.
Reported: process CPU time of ``fit``, fastest decile and median of the
repeats, metered / unmetered - 1. Keras runs on the torch backend unless
KERAS_BACKEND says otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from _common import arguments, emit

os.environ.setdefault("KERAS_BACKEND", "torch")

SAMPLES, BATCH = 8192, 32
GRANULARITY = os.environ.get("GC_BENCH_GRANULARITY", "batch")


def lightning_fit() -> Callable[[bool], float]:
    import lightning.pytorch as pl
    import torch

    from green_callbacks.lightning import EnergyCallback

    torch.set_num_threads(1)
    x, y = torch.randn(SAMPLES, 64), torch.randint(0, 10, (SAMPLES,))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    def run(metered: bool) -> float:
        callbacks = [EnergyCallback(granularity=GRANULARITY)] if metered else []
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, callbacks=callbacks,
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        )  # fmt: skip
        model = MLP()
        start = time.process_time()
        trainer.fit(model, data)
        return time.process_time() - start

    return run


def keras_fit() -> Callable[[bool], float]:
    import keras
    import numpy as np

    from green_callbacks.keras import EnergyCallback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 64)).astype("float32")
    y = rng.integers(0, 10, size=SAMPLES)

    def run(metered: bool) -> float:
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)]
        )
        model.compile(
            optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        callbacks = [EnergyCallback(granularity=GRANULARITY)] if metered else []
        start = time.process_time()
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=callbacks)
        return time.process_time() - start

    return run


def compare(run: Callable[[bool], float], repeats: int) -> dict[str, float]:
    base: list[float] = []
    metered: list[float] = []
    run(False)  # warm up
    for i in range(repeats):
        for flag in (False, True) if i % 2 == 0 else (True, False):
            (metered if flag else base).append(run(flag))
    base.sort()
    metered.sort()
    decile = max(len(base) // 10, 0)
    return {
        "fit_cpu_s": base[len(base) // 2],
        "slowdown_ratio": metered[decile] / base[decile],
        "slowdown_ratio_median": metered[len(metered) // 2] / base[len(base) // 2],
    }


def main() -> None:
    args = arguments(__doc__ or "")
    repeats = 2 if args.quick else 20
    results = {
        "lightning": compare(lightning_fit(), repeats),
        "keras": compare(keras_fit(), repeats),
    }
    table = [
        f"{'framework':<12}{'fit CPU s':>11}{'slowdown':>11}{'(median)':>11}",
        *(
            f"{n:<12}{r['fit_cpu_s']:>11.3f}{(r['slowdown_ratio'] - 1) * 100:>+10.2f}%"
            f"{(r['slowdown_ratio_median'] - 1) * 100:>+10.2f}%"
            for n, r in results.items()
        ),
        f"one epoch of {SAMPLES // BATCH} steps, EnergyCallback(granularity='batch'),",
        "meters='auto';",
        "slowdown: fastest-decile process CPU time of fit, metered / unmetered - 1",
    ]
    emit({"repeats": repeats, "frameworks": results}, table, args.json)


if __name__ == "__main__":
    main()
