"""Callbacks and a layer the Keras policy tests share, for Keras 3 and tf_keras alike.

Each is a mixin that imports neither Keras; a test module puts it on its
Keras's ``Callback`` or ``Layer`` (tf_keras's ``fit`` rejects Keras 3 callbacks).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from green_callbacks.testing import FakeClock


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

    It raises ``out_of_memory``'s error, the type the backend's allocator
    raises (``torch.OutOfMemoryError``, ``tf.errors.ResourceExhaustedError``).
    The model runs eagerly so that the layer sees every step's concrete batch size.
    """

    out_of_memory: Callable[[str], Exception]

    def __init__(self, fits: int, after: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fits, self.after, self.calls, self.sizes = fits, after, 0, []

    def call(self, inputs: Any, training: bool = False) -> Any:
        if training:
            size = int(inputs.shape[0])
            if self.calls >= self.after and size > self.fits:
                raise type(self).out_of_memory(f"Tried to allocate a batch of {size} (injected)")
            self.calls += 1
            self.sizes.append(size)
        return inputs


def tensorflow_out_of_memory(message: str) -> Exception:
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, f"OOM when allocating: {message}")
