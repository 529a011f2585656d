"""What the Keras policy tests need, for Keras 3 and tf_keras alike: a :class:`Kit` each.

tf_keras's ``fit`` rejects Keras 3 callbacks, so the helper callbacks and the
faulty layer are mixins put on each Keras's own ``Callback`` and ``Layer``.
"""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from green_callbacks.testing import FakeClock, fake_metered

BATCH = 16
BATCHES_PER_EPOCH = 4


class TicksHooks:
    """Moves the fake clock 1 s per training batch, then samples the meter (the sampler
    thread's job in a real run); optionally signals at a global batch."""

    def __init__(self, energy: Any, clock: FakeClock, signal_at: int | None = None) -> None:
        super().__init__()
        self.energy, self.clock, self.signal_at, self.batches = energy, clock, signal_at, 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.clock.advance(1.0)
        if self.energy.session is not None:
            self.energy.session.tracker.poll()
        self.batches += 1
        if self.batches == self.signal_at:  # a scheduler's pre-emption warning
            os.kill(os.getpid(), signal.SIGUSR1)


class ScriptedHooks:
    """Puts a scripted ``val_acc`` into each epoch's logs (before the policies read them)."""

    def __init__(self, accuracies: list[float]) -> None:
        super().__init__()
        self.accuracies = accuracies

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert logs is not None
        logs["val_acc"] = self.accuracies[min(epoch, len(self.accuracies) - 1)]


class FaultyMemoryHooks:
    """Runs out of memory on batches larger than ``fits`` from step ``after`` on.

    It raises the backend's real out-of-memory type (``torch.OutOfMemoryError``,
    ``tf.errors.ResourceExhaustedError``), as the allocator would. The model
    runs eagerly so that the layer sees every step's concrete batch size.
    """

    backend = ""

    def __init__(self, fits: int, after: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fits, self.after, self.calls, self.sizes = fits, after, 0, []

    def call(self, inputs: Any, training: bool = False) -> Any:
        if training:
            size = int(inputs.shape[0])
            if self.calls >= self.after and size > self.fits:
                raise out_of_memory(self.backend, f"Tried to allocate a batch of {size} (fault)")
            self.calls += 1
            self.sizes.append(size)
        return inputs


def out_of_memory(backend: str, message: str) -> Exception:
    if backend == "torch":
        import torch

        return torch.OutOfMemoryError(f"CUDA out of memory. {message}")
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.errors.ResourceExhaustedError(None, None, f"OOM when allocating: {message}")
    return MemoryError(message)


@dataclass
class Kit:
    """One Keras (``keras`` or ``tf_keras``) with its green_callbacks module and test helpers."""

    name: str
    k: Any  # the Keras module
    green: Any  # green_callbacks.keras or green_callbacks.tf_keras
    Ticks: type
    Scripted: type
    FaultyMemory: type
    tear: Callable[[Path], Path]  # a backup folder's weights file, to corrupt

    def energy(self, **kwargs: Any) -> tuple[Any, FakeClock]:
        return fake_metered(self.green.EnergyCallback, **kwargs)

    def model(self, fault: Any = None) -> Any:
        layers: list[Any] = [self.k.Input((8,))]
        if fault is not None:
            layers.append(fault)
        layers += [self.k.layers.Dense(4, activation="relu"), self.k.layers.Dense(2)]
        net = self.k.Sequential(layers)
        net.compile(
            optimizer="adam",
            loss=self.k.losses.SparseCategoricalCrossentropy(from_logits=True),
            run_eagerly=fault is not None,
        )
        return net

    def fit(self, net: Any, callbacks: list[Any], epochs: int = 10, verbose: Any = 0) -> Any:
        x, y = data()
        return net.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=verbose, callbacks=callbacks)

    def numpy(self, variables: list[Any]) -> list[np.ndarray]:
        return [np.asarray(self.green.EnergyCheckpoint.flavour.to_numpy(v)) for v in variables]


def data(samples: int = BATCH * BATCHES_PER_EPOCH) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(samples, 8)).astype("float32"), rng.integers(0, 2, size=samples)


def kit(name: str) -> Kit:
    """The kit of ``"keras"`` (Keras 3, this process's backend) or ``"tf_keras"``."""
    k = importlib.import_module(name)
    green = importlib.import_module(f"green_callbacks.{name}")
    backend = green.EnergyCheckpoint.flavour.backend()

    def put_on(mixin: type, base: type, **extra: Any) -> type:
        return type(
            mixin.__name__.removesuffix("Hooks"), (mixin, base), {"__doc__": mixin.__doc__, **extra}
        )

    if name == "keras":
        tear: Callable[[Path], Path] = lambda folder: folder / "model.weights.h5"  # noqa: E731
    else:
        tear = lambda folder: next(folder.glob("weights.data-*"))  # noqa: E731
    return Kit(
        name, k, green,
        Ticks=put_on(TicksHooks, k.callbacks.Callback),
        Scripted=put_on(ScriptedHooks, k.callbacks.Callback),
        FaultyMemory=put_on(FaultyMemoryHooks, k.layers.Layer, backend=backend),
        tear=tear,
    )  # fmt: skip
