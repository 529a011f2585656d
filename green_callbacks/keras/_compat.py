"""The Keras 3 internals green_callbacks relies on, in one place, with the versions checked.

Keras callbacks have no public way to resume ``fit`` at an epoch or to drop
compiled step functions; ``BackupAndRestore`` itself sets ``model._initial_epoch``.
Each use goes through here, so a Keras release that changes them fails with
:class:`~green_callbacks.errors.FrameworkAPIError` naming the versions
instead of resuming at the wrong epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from green_callbacks.keras._hooks import Flavour

WEIGHTS = "model.weights.h5"


class Keras3(Flavour):
    """Keras 3 on any backend."""

    package = "green_callbacks.keras"
    library = "Keras"
    checked = ("3.5", "3.15")

    def version(self) -> str:
        return str(keras.__version__)

    def backend(self) -> str:
        return str(keras.backend.backend())

    def to_numpy(self, value: Any) -> Any:
        return keras.ops.convert_to_numpy(value)

    def map_structure(self, function: Callable[[Any], Any], structure: Any) -> Any:
        return keras.tree.map_structure(function, structure)

    def build_optimizer(self, model: Any) -> None:
        optimizer = model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)

    def set_initial_epoch(self, model: Any, epoch: int) -> None:
        self.require(model, "_initial_epoch")
        model._initial_epoch = epoch

    def clear_initial_epoch(self, model: Any) -> None:
        if hasattr(model, "_initial_epoch"):
            model._initial_epoch = None

    def save_weights(self, model: Any, folder: Path) -> None:
        model.save_weights(str(folder / WEIGHTS))  # the optimizer's variables go in too

    def load_weights(self, model: Any, folder: Path) -> None:
        self.build_optimizer(model)  # its variables are in the file
        model.load_weights(str(folder / WEIGHTS))


KERAS3 = Keras3()
