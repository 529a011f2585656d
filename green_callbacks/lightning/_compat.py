"""The Lightning internals green_callbacks relies on, in one place, with the versions checked.

``EnergyCallback`` logs each step's energy at the step Lightning logs that
step's own metrics at: the training epoch loop's ``_batches_that_stepped``,
which Lightning's logger connector and its ``LearningRateMonitor`` use too
(``trainer.global_step`` counts optimizer steps: one ahead at a batch's end,
and more than one a batch with several optimizers); and, as Lightning does, it
logs nothing at a batch whose gradients accumulate (the loop's
``_should_accumulate()``): the step's figure covers all of its batches. It
puts the progress bar's figures into the dict the bar shows, the logger
connector's ``_progress_bar_metrics``.
``OOMGuard`` goes on inside one ``trainer.fit`` after an out-of-memory error
the way Lightning's own ``BatchSizeFinder`` does, through the fit loop's
``run``, its combined loaders and the checkpoint connector. None of these is
public API. Each use goes through here, so a Lightning release that changes
them fails with :class:`~green_callbacks.errors.FrameworkAPIError` naming the
versions instead of failing somewhere deep inside a fit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning

from green_callbacks.errors import FrameworkAPIError

CHECKED = ("2.2", "2.6")
"""Oldest and newest Lightning releases these internals were checked against."""


def _get(owner: Any, name: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError:
        raise FrameworkAPIError(
            f"Lightning {lightning.__version__} has no {type(owner).__name__}.{name}, which "
            f"OOMGuard uses to go on after an out-of-memory error (checked with Lightning "
            f"{CHECKED[0]} to {CHECKED[1]}); install a Lightning release in that range, or "
            "pass OOMGuard(recover=False, preflight=False) to keep only the memory watch"
        ) from None


NO_STEP_COUNTER = (
    f"Lightning {lightning.__version__} has no fit_loop.epoch_loop._batches_that_stepped or "
    f"_should_accumulate (checked with Lightning {CHECKED[0]} to {CHECKED[1]}): the steps "
    "Lightning logs are not known, so no step's energy is logged (the epochs' are)"
)


def step_counter(trainer: Any) -> Any | None:
    """The loop whose ``_batches_that_stepped`` is the step Lightning logs the current
    training batch's metrics at (read on the per-step path); None on a Lightning without it."""
    loop = trainer.fit_loop.epoch_loop
    counts = isinstance(getattr(loop, "_batches_that_stepped", None), int)
    return loop if counts and callable(getattr(loop, "_should_accumulate", None)) else None


def progress_bar_metrics(trainer: Any) -> dict[str, Any] | None:
    """The dict the progress bar shows (``trainer.progress_bar_metrics`` returns it after
    adding what was logged with ``prog_bar=True``), to put figures on the bar directly;
    None on a Lightning without it. A figure logged with ``prog_bar=True`` instead stays in
    Lightning's results, which it processes at every later step (about 6 % of a small
    model's fit for the bar's two figures)."""
    shown = getattr(getattr(trainer, "_logger_connector", None), "_progress_bar_metrics", None)
    return shown if isinstance(shown, dict) else None


def wrap_fit_loop(trainer: Any, wrap: Callable[[Callable[[], None]], Callable[[], None]]) -> None:
    """Replace ``trainer.fit_loop.run`` by ``wrap(run)`` until :func:`unwrap_fit_loop`."""
    loop = trainer.fit_loop
    loop.run = wrap(_get(loop, "run"))  # an instance attribute over the method


def unwrap_fit_loop(trainer: Any) -> None:
    vars(trainer.fit_loop).pop("run", None)


def dump_checkpoint(trainer: Any) -> dict[str, Any]:
    """The checkpoint dict ``trainer.save_checkpoint`` would write, without writing it."""
    connector = _get(trainer, "_checkpoint_connector")
    checkpoint: dict[str, Any] = _get(connector, "dump_checkpoint")(False)
    return checkpoint


def reset_loaders(trainer: Any) -> None:
    """Make the fit loop rebuild its dataloaders (from a new batch size) when it next runs."""
    _get(trainer.fit_loop, "_combined_loader")
    trainer.fit_loop._combined_loader = None
    trainer.fit_loop.epoch_loop.val_loop._combined_loader = None


def first_train_batch(trainer: Any) -> Any | None:
    """The first batch of the training data as the fit loop builds it, or None without data."""
    loop = trainer.fit_loop
    loop.setup_data()
    loader = _get(loop, "_combined_loader")
    return None if loader is None else next(iter(loader.flattened[0]))


def to_device(module: Any, batch: Any) -> Any:
    """``batch`` moved to the module's device through its transfer hooks, as in training."""
    return _get(module, "_apply_batch_transfer_handler")(batch)
