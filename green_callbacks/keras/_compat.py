"""The Keras internals green_callbacks relies on, in one place, with the versions checked.

Keras callbacks have no public way to resume ``fit`` at an epoch or to drop
compiled step functions; ``BackupAndRestore`` itself sets ``model._initial_epoch``.
Each use goes through here, so a Keras release that changes them fails with
:class:`~green_callbacks.errors.FrameworkAPIError` naming the versions
instead of resuming at the wrong epoch.
"""

from __future__ import annotations

from typing import Any

import keras

from green_callbacks.errors import FrameworkAPIError

CHECKED = ("3.5", "3.15")
"""Oldest and newest Keras releases these internals were checked against."""


def _require(model: Any, name: str) -> None:
    if not hasattr(model, name):
        raise FrameworkAPIError(
            f"Keras {keras.__version__} models have no {name!r}, which green_callbacks uses to "
            f"resume fit at an epoch (checked with Keras {CHECKED[0]} to {CHECKED[1]}); "
            "install a Keras release in that range or report the new version to green_callbacks"
        )


def set_initial_epoch(model: Any, epoch: int) -> None:
    """Make the next ``fit`` start at ``epoch``, as ``BackupAndRestore`` does."""
    _require(model, "_initial_epoch")
    model._initial_epoch = epoch


def clear_initial_epoch(model: Any) -> None:
    """Let a later ``fit`` start at the epoch it is given."""
    if hasattr(model, "_initial_epoch"):
        model._initial_epoch = None


def forget_step_functions(model: Any) -> None:
    """Drop the compiled step functions an error interrupted; the next call compiles them afresh.

    (On TensorFlow a ``tf.function`` whose first call failed cannot create
    the optimizer's variables on a later call.)
    """
    for name in ("train_function", "test_function", "predict_function"):
        if hasattr(model, name):
            setattr(model, name, None)
