"""What metering costs a fit: the start of a run, and each step, in Lightning and Keras.

Each framework fits the same small MLP (64 -> 128 -> 10, batch 32, 8192
synthetic digits-sized samples, one epoch of 256 steps, one CPU thread) four
ways, interleaved, in a rotating order: no callback, an empty callback of the
framework (what any callback costs there), ``EnergyCallback(granularity=
"epoch")`` and ``EnergyCallback()`` (the default, step figures on the logged
steps). Reported: process CPU time of ``fit``, fastest decile and median over
the repeats, each as a ratio to the plain fit; and the default against
``granularity="epoch"`` (the target: under 1 %). Separately, the start and
stop of one metering run (``meters="auto"``: detecting sources, the first
reads, the sampler thread, the summary) in CPU and wall time, the fixed cost
a fit pays whatever its length. Keras runs on the torch backend unless
KERAS_BACKEND says otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from _common import arguments, emit, median

os.environ.setdefault("KERAS_BACKEND", "torch")

SAMPLES, BATCH = 8192, 32
WAYS = ("none", "empty", "epoch", "default")


def lightning_fit() -> Callable[[str], float]:
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

    def run(way: str) -> float:
        callbacks = {
            "none": [], "empty": [pl.Callback()], "epoch": [EnergyCallback(granularity="epoch")],
            "default": [EnergyCallback()],
        }[way]  # fmt: skip
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, callbacks=callbacks,
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        )  # fmt: skip
        model = MLP()
        start = time.process_time()
        trainer.fit(model, data)
        return time.process_time() - start

    return run


def keras_fit() -> Callable[[str], float]:
    import keras
    import numpy as np

    from green_callbacks.keras import EnergyCallback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 64)).astype("float32")
    y = rng.integers(0, 10, size=SAMPLES)

    def run(way: str) -> float:
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)]
        )
        model.compile(
            optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        callbacks = {
            "none": [], "empty": [keras.callbacks.Callback()],
            "epoch": [EnergyCallback(granularity="epoch")], "default": [EnergyCallback()],
        }[way]  # fmt: skip
        start = time.process_time()
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=callbacks)
        return time.process_time() - start

    return run


def compare(run: Callable[[str], float], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    run("none")  # warm up
    for i in range(repeats):
        order = WAYS[i % len(WAYS) :] + WAYS[: i % len(WAYS)]  # rotate: no way always first
        for way in order:
            times[way].append(run(way))
    fast = {way: sorted(t)[len(t) // 10] for way, t in times.items()}
    mid = {way: median(t) for way, t in times.items()}
    result = {"fit_cpu_s": mid["none"]}
    for way in WAYS[1:]:
        result[f"{way}_ratio"] = fast[way] / fast["none"]
        result[f"{way}_ratio_median"] = mid[way] / mid["none"]
    result["default_vs_epoch"] = fast["default"] / fast["epoch"]
    result["default_vs_epoch_median"] = mid["default"] / mid["epoch"]
    return result


def start_cost(repeats: int) -> dict[str, float]:
    """CPU and wall time of starting and stopping one metering run (meters="auto")."""
    from green_callbacks.core.session import CallbackConfig, EnergySession

    config = CallbackConfig()
    cpu, wall = [], []
    for _ in range(repeats + 1):
        c0, w0 = time.process_time(), time.perf_counter()
        EnergySession(config).start().stop()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_ms": median(cpu[1:]) * 1000, "wall_ms": median(wall[1:]) * 1000}


def main() -> None:
    args = arguments(__doc__ or "")
    repeats = 2 if args.quick else 20
    results = {
        "lightning": compare(lightning_fit(), repeats),
        "keras": compare(keras_fit(), repeats),
    }
    start = start_cost(5 if args.quick else 50)

    def pct(ratio: float) -> str:
        return f"{(ratio - 1) * 100:>+8.2f}%"

    table = [
        f"{'framework':<11}{'fit CPU s':>10}{'empty cb':>10}{'epoch':>10}{'default':>10}"
        f"{'default/epoch':>15}",
        *(
            f"{n:<11}{r['fit_cpu_s']:>10.3f} {pct(r['empty_ratio'])} {pct(r['epoch_ratio'])}"
            f" {pct(r['default_ratio'])} {pct(r['default_vs_epoch']):>14}"
            for n, r in results.items()
        ),
        f"one epoch of {SAMPLES // BATCH} steps; fastest-decile process CPU time of fit over "
        "the plain fit - 1; target: default/epoch < 1 %",
        f"start + stop of a metering run (meters='auto'): {start['cpu_ms']:.2f} ms CPU, "
        f"{start['wall_ms']:.2f} ms wall (median)",
    ]
    emit({"repeats": repeats, "frameworks": results, "start_stop": start}, table, args.json)


if __name__ == "__main__":
    main()
