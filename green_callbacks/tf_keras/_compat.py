"""The tf_keras internals green_callbacks relies on, in one place, with the versions checked.

tf_keras's ``fit`` asks ``model._training_state`` (set by its own
``BackupAndRestore``) which epoch to start at, after the callbacks'
``on_train_begin``: :class:`TfKeras` answers it once to resume a backup.
A tf_keras release that changes this fails with
:class:`~green_callbacks.errors.FrameworkAPIError` naming the versions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from green_callbacks.errors import ConfigError
from green_callbacks.keras._hooks import Flavour

WEIGHTS = "weights"
"""The TensorFlow checkpoint's prefix in a backup folder (it holds the optimizer's state too)."""


class ResumeAt:
    """Answers tf_keras's question of where ``fit`` starts, once, then steps aside."""

    def __init__(self, model: Any, epoch: int) -> None:
        self.model, self.epoch = model, epoch

    def maybe_load_initial_counters_from_ckpt(
        self, steps_per_epoch: int, initial_epoch: int, mode: Any = None
    ) -> tuple[int, int]:
        self.model._training_state = None
        return self.epoch, 0


class TfKeras(Flavour):
    """tf_keras (Keras 2), always on TensorFlow."""

    package = "green_callbacks.tf_keras"
    library = "tf_keras"
    checked = ("2.16", "2.21")

    def version(self) -> str:
        return str(tf_keras.__version__)

    def backend(self) -> str:
        return "tensorflow"

    def to_numpy(self, value: Any) -> Any:
        return np.asarray(value)

    def map_structure(self, function: Callable[[Any], Any], structure: Any) -> Any:
        return tf.nest.map_structure(function, structure)

    def build_optimizer(self, model: Any) -> None:
        optimizer = model.optimizer
        if optimizer is None:
            return
        if hasattr(optimizer, "_create_all_weights"):  # tf_keras.optimizers.legacy
            optimizer._create_all_weights(model.trainable_variables)
        elif not getattr(optimizer, "_built", False):
            optimizer.build(model.trainable_variables)

    def set_initial_epoch(self, model: Any, epoch: int) -> None:
        self.require(model, "_training_state")
        if model._training_state is not None and not isinstance(model._training_state, ResumeAt):
            raise ConfigError(
                "EnergyCheckpoint and tf_keras's BackupAndRestore both resume this fit; "
                "keep one of them"
            )
        model._training_state = ResumeAt(model, epoch)

    def clear_initial_epoch(self, model: Any) -> None:
        if isinstance(getattr(model, "_training_state", None), ResumeAt):
            model._training_state = None

    def save_weights(self, model: Any, folder: Path) -> None:
        model.save_weights(str(folder / WEIGHTS), save_format="tf")

    def load_weights(self, model: Any, folder: Path) -> None:
        self.build_optimizer(model)  # so that its state is restored now, not when first used
        model.load_weights(str(folder / WEIGHTS)).assert_existing_objects_matched()


TF_KERAS = TfKeras()
