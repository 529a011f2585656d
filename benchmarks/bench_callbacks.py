"""What metering costs a fit, in Lightning, Keras 3 and Hugging Face: at its start and per step.

Each framework fits the same small MLP (64 -> 128 -> 10, batch 32, one CPU
thread) for one epoch of 16, 256 and 2560 steps (Lightning also with its
progress bar, on by default, where the callback shows its figures), three
ways, interleaved in a rotating order: no callback, an empty callback of
the framework (what any callback costs there) and ``EnergyCallback()`` (the
default: estimate or best meter, step figures on the logged steps). Reported:

- end to end: the fit's wall and process CPU time (every thread, the sampler's
  included) with ``EnergyCallback()`` over the empty callback's and over the
  plain fit's, medians over the repeats, at each length;
- where the callback's own time goes, from further fits whose callback has
  every hook timed (wall, and the training thread's CPU): the *start* (every
  hook outside the epochs: setup, begin, end, teardown, with detection, the
  first reads, the sampler thread and the summary), the cost *per step* (the
  batch and step hooks over the steps) and per epoch. The timer's own cost, in
  situ, is taken off: each timed fit is paired with one of the empty callback
  whose no-op hooks of the same names are timed the same way.

And the step profile of a run that writes a summary (``summary_path=``): the
fit's wall time over the same fit with the profile off, and the profile
function's own time as the summary reports it.

Targets (issue #26): start under 2 ms wall, a step under 5 us, end to end
within 1 % of the empty callback on a fit of about a second (2560 steps).
Keras runs on the torch backend unless KERAS_BACKEND says otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _common import arguments, emit, median

os.environ.setdefault("KERAS_BACKEND", "torch")

FEATURES, HIDDEN, CLASSES, BATCH = 64, 128, 10, 32
WAYS = ("none", "empty", "energy")
Fit = Callable[[int, list[Any]], None]
"""Fit a fresh model for ``steps`` steps with these callbacks."""


def lightning_kit(bar: bool = False) -> tuple[Fit, Callable[[], Any], Callable[[], Any]]:
    """Lightning's fit, with its progress bar (the default, drawn to nowhere) or without."""
    import lightning.pytorch as pl
    import torch

    from green_callbacks.lightning import EnergyCallback

    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # its notes on every fit

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES)
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    def fit(steps: int, callbacks: list[Any]) -> None:
        x = torch.randn(steps * BATCH, FEATURES)
        y = torch.randint(0, CLASSES, (steps * BATCH,))
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, callbacks=callbacks,
            enable_progress_bar=bar, enable_model_summary=False, enable_checkpointing=False,
        )  # fmt: skip
        with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere):
            trainer.fit(MLP(), data)

    return fit, pl.Callback, EnergyCallback


def keras_kit() -> tuple[Fit, Callable[[], Any], Callable[[], Any]]:
    import keras
    import numpy as np

    from green_callbacks.keras import EnergyCallback

    rng = np.random.default_rng(0)

    def fit(steps: int, callbacks: list[Any]) -> None:
        x = rng.normal(size=(steps * BATCH, FEATURES)).astype("float32")
        y = rng.integers(0, CLASSES, size=steps * BATCH)
        model = keras.Sequential([
            keras.Input((FEATURES,)), keras.layers.Dense(HIDDEN, activation="relu"),
            keras.layers.Dense(CLASSES),
        ])  # fmt: skip
        model.compile(
            optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=callbacks)

    return fit, keras.callbacks.Callback, EnergyCallback


def hf_kit() -> tuple[Fit, Callable[[], Any], Callable[[], Any]]:
    import torch
    import transformers

    from green_callbacks.hf import EnergyCallback

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    out = tempfile.mkdtemp(prefix="gc-bench-hf-")

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES)
            )

        def forward(self, x: Any, labels: Any) -> dict[str, Any]:
            return {"loss": torch.nn.functional.cross_entropy(self.net(x), labels)}

    class Rows(torch.utils.data.Dataset[dict[str, Any]]):
        def __init__(self, steps: int) -> None:
            self.x = torch.randn(steps * BATCH, FEATURES)
            self.y = torch.randint(0, CLASSES, (steps * BATCH,))

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"x": self.x[i], "labels": self.y[i]}

    def fit(steps: int, callbacks: list[Any]) -> None:
        args = transformers.TrainingArguments(
            output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=1,
            learning_rate=0.01, report_to="none", save_strategy="no", disable_tqdm=True,
            use_cpu=True, dataloader_num_workers=0,
        )  # fmt: skip
        trainer = transformers.Trainer(
            model=MLP(), args=args, train_dataset=Rows(steps), callbacks=callbacks
        )
        trainer.remove_callback(transformers.PrinterCallback)  # no tqdm: it prints each log
        trainer.train()

    return fit, transformers.TrainerCallback, EnergyCallback


KITS = {
    "lightning": lightning_kit,
    "lightning+bar": functools.partial(lightning_kit, bar=True),
    "keras": keras_kit,
    "hf": hf_kit,
}


def end_to_end(
    fit: Fit, make: dict[str, Callable[[], Any]], steps: int, repeats: int
) -> dict[str, float]:
    """Median wall and CPU seconds of each way, interleaved in a rotating order."""
    wall: dict[str, list[float]] = {way: [] for way in WAYS}
    cpu: dict[str, list[float]] = {way: [] for way in WAYS}
    fit(steps, [])  # warm up: the first fit pays the imports and compilations
    for i in range(repeats):
        for way in WAYS[i % len(WAYS) :] + WAYS[: i % len(WAYS)]:
            callbacks = [] if way == "none" else [make[way]()]
            w0, c0 = time.perf_counter(), time.process_time()
            fit(steps, callbacks)
            cpu[way].append(time.process_time() - c0)
            wall[way].append(time.perf_counter() - w0)
    result = {"fit_wall_s": median(wall["none"]), "fit_cpu_s": median(cpu["none"])}
    for base in ("none", "empty"):
        result[f"wall_vs_{base}"] = median(wall["energy"]) / median(wall[base])
        result[f"cpu_vs_{base}"] = median(cpu["energy"]) / median(cpu[base])
    return result


class HookTimer:
    """Times hooks of one callback instance (the outermost call only), by kind: by default the
    hooks green_callbacks defines, leaving the framework's own no-op hooks as they are; or the
    hooks named ``names``, whoever defines them."""

    def __init__(self, callback: Any, names: list[str] | None = None) -> None:
        self.wall = {"start": 0.0, "step": 0.0, "epoch": 0.0}
        self.cpu = dict(self.wall)
        self.calls = {"start": 0, "step": 0, "epoch": 0}
        self._depth = 0
        for name in own_hooks(callback) if names is None else names:
            setattr(callback, name, self._timed(getattr(callback, name), kind_of(name)))

    def _timed(self, hook: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return hook(*args, **kwargs)
            self._depth += 1
            self.calls[kind] += 1
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return hook(*args, **kwargs)
            finally:
                self.cpu[kind] += time.thread_time() - c0
                self.wall[kind] += time.perf_counter() - w0
                self._depth -= 1

        return timed


def own_hooks(callback: Any) -> list[str]:
    """The hooks (``on_*``, ``setup``, ``teardown``, ``set_model``) green_callbacks defines."""
    names = []
    for name in dir(callback):
        if name.startswith("on_") or name in ("setup", "teardown", "set_model"):
            owner = next((c for c in type(callback).__mro__ if name in vars(c)), None)
            if owner is not None and owner.__module__.startswith("green_callbacks"):
                names.append(name)
    return names


def kind_of(hook: str) -> str:
    """``step`` for per-step hooks (batch, step, log), ``epoch``, else ``start`` (once a fit)."""
    if "batch" in hook or "step" in hook or hook == "on_log":
        return "step"
    return "epoch" if "epoch" in hook else "start"


def hook_costs(
    fit: Fit,
    empty: Callable[[], Any],
    make: Callable[[], Any],
    lengths: tuple[int, ...],
    repeats: int,
) -> dict[str, float]:
    """Start cost and per-step cost of the callback's hooks, from timed fits (medians).

    The timer's own cost is not that of a tight loop: in a fit, after the model's step
    has run, every call costs several times more. So each timed fit of the callback is
    paired with one of the framework's empty callback whose no-op hooks of the same
    names are timed the same way, and what those measure is taken off.
    """
    names = own_hooks(make())
    cost: dict[str, list[float]] = {}
    for _ in range(repeats):
        for steps in lengths:
            timed: dict[str, HookTimer] = {}
            for way, factory in (("null", empty), ("energy", make)):
                callback = factory()
                timed[way] = HookTimer(callback, names)
                fit(steps, [callback])
            energy, null = timed["energy"], timed["null"]
            figures = {
                "start_wall_ms": (energy.wall["start"] - null.wall["start"]) * 1e3,
                "start_cpu_ms": (energy.cpu["start"] - null.cpu["start"]) * 1e3,
                "step_wall_us": (energy.wall["step"] - null.wall["step"]) / steps * 1e6,
                "step_cpu_us": (energy.cpu["step"] - null.cpu["step"]) / steps * 1e6,
                "epoch_wall_ms": (energy.wall["epoch"] - null.wall["epoch"]) * 1e3,
            }
            for key, value in figures.items():
                cost.setdefault(key, []).append(value)
    return {key: median(values) for key, values in cost.items()}


def profile_cost(
    fit: Fit, energy: Callable[..., Any], steps: int, repeats: int
) -> dict[str, float]:
    """A run that writes a summary profiles a few steps (green_callbacks.core.profile): its
    fit's wall time over the same fit with the profile off, interleaved, and the profile
    function's own time, as the summary reports it."""
    import green_callbacks.core.session as session_module

    real = session_module.StepProfile
    folder = tempfile.mkdtemp(prefix="gc-bench-profile-")
    wall: dict[str, list[float]] = {"on": [], "off": []}
    own: list[float] = []
    try:
        for i in range(repeats):
            for way in ("on", "off") if i % 2 == 0 else ("off", "on"):
                session_module.StepProfile = real if way == "on" else lambda: real(steps=0)
                callback = energy(summary_path=f"{folder}/summary.json")
                start = time.perf_counter()
                fit(steps, [callback])
                wall[way].append(time.perf_counter() - start)
                if way == "on":
                    own.append(callback.summary["facts"]["profile_overhead_s"])
    finally:
        session_module.StepProfile = real
    return {
        "wall_vs_unprofiled": median(wall["on"]) / median(wall["off"]),
        "own_ms": median(own) * 1000,
        "fit_wall_s": median(wall["off"]),
    }


def main() -> None:
    args = arguments(__doc__ or "")
    lengths = (16, 64) if args.quick else (16, 256, 2560)
    repeats = 1 if args.quick else 9
    results: dict[str, Any] = {}
    for name, kit in KITS.items():
        fit, empty, energy = kit()
        make = {"empty": empty, "energy": energy}
        print(f"{name}: fits of {', '.join(map(str, lengths))} steps...", flush=True)
        results[name] = {
            "fits": {str(n): end_to_end(fit, make, n, repeats) for n in lengths},
            "hooks": hook_costs(fit, empty, energy, lengths, max(repeats // 3, 1)),
            "profile": profile_cost(fit, energy, lengths[1], repeats),
        }

    def pct(ratio: float) -> str:
        return f"{(ratio - 1) * 100:+.1f}%"

    table = [
        f"{'framework':<10}{'steps':>6}{'fit wall s':>11}{'wall/empty':>11}{'cpu/empty':>10}"
        f"{'wall/none':>10}{'cpu/none':>9}"
    ]
    for name, result in results.items():
        for steps, r in result["fits"].items():
            table.append(
                f"{name:<10}{steps:>6}{r['fit_wall_s']:>11.3f}{pct(r['wall_vs_empty']):>11}"
                f"{pct(r['cpu_vs_empty']):>10}{pct(r['wall_vs_none']):>10}"
                f"{pct(r['cpu_vs_none']):>9}"
            )
    table.append("EnergyCallback() against the same fit with an empty callback / with none")
    table.append(f"{'framework':<10}{'start wall ms':>14}{'start cpu ms':>13}{'step wall us':>13}"
                 f"{'step cpu us':>12}{'epoch wall ms':>14}")  # fmt: skip
    for name, result in results.items():
        h = result["hooks"]
        table.append(
            f"{name:<10}{h['start_wall_ms']:>14.2f}{h['start_cpu_ms']:>13.2f}"
            f"{h['step_wall_us']:>13.2f}{h['step_cpu_us']:>12.2f}{h['epoch_wall_ms']:>14.2f}"
        )
    table.append("inside the callback's hooks (median); targets: start < 2 ms wall, step < 5 us, "
                 "end to end < 1 % over the empty callback at 2560 steps")  # fmt: skip
    table.append(f"{'framework':<10}{'steps':>6}{'profile own ms':>15}{'wall/unprofiled':>16}")
    for name, result in results.items():
        p = result["profile"]
        table.append(f"{name:<10}{lengths[1]:>6}{p['own_ms']:>15.2f}"
                     f"{pct(p['wall_vs_unprofiled']):>16}")  # fmt: skip
    table.append("a run that writes a summary profiles 3 steps (the advisor's P8): the profile "
                 "function's own time, and the fit against the same fit unprofiled")  # fmt: skip
    emit({"repeats": repeats, "steps": list(lengths), "frameworks": results}, table, args.json)


if __name__ == "__main__":
    main()
