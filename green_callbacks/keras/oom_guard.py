"""OOMGuard for Keras 3: find out-of-memory errors before they cost energy, survive them after.

The control flow is :class:`green_callbacks.policies.OOMDriver`'s. A Keras
callback cannot catch an error raised inside ``fit``, so recovery goes through
:meth:`OOMGuard.fit`, which calls ``model.fit`` and, after an OOM, saves the
weights, shrinks the batch size and calls it again from the epoch that was
interrupted (Keras resumes at an epoch's start). Used as a plain callback, the
guard only watches memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import keras

from green_callbacks.core import keys
from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.memory import device_memory, measured_peak
from green_callbacks.errors import OOMGuardConfigError
from green_callbacks.keras._compat import KERAS3
from green_callbacks.keras._hooks import Flavour
from green_callbacks.policies.memory import OOMEvent, OOMPlanConfig
from green_callbacks.policies.oom_driver import OOMDriver

log = logging.getLogger("green_callbacks.oom_guard")
OOM_NOTE = "interrupted by an out-of-memory error; OOMGuard went on at a smaller batch size"


class OOMGuardHooks:
    """Pre-flight check, recovery from out-of-memory errors, and a leak watch.

    Args:
        factor: after an OOM the batch size is multiplied by this.
        min_batch_size: the floor; an OOM at the floor raises :class:`OOMFloorError`.
        preflight: before training, run one training step on the first batch
            (weights, optimizer state and metrics are restored after it) and
            shrink the batch size until it fits.
        recover: catch OOMs in :meth:`fit`, save, shrink and go on (False: re-raise).
        dirpath: where emergency weights go (default ``./oom_guard``).
        leak_window: epochs the memory trend is fitted over.
        min_leak_mib: average growth per epoch that counts as a leak. Units: MiB.

    Example::

        guard = OOMGuard(min_batch_size=8)
        history = guard.fit(model, x, y, batch_size=256, epochs=10,
                            callbacks=[EnergyCallback()])

    :attr:`events` lists every OOM handled, :attr:`batch_size` the size
    training finished with, :attr:`preflight_peak_bytes` the pre-flight's
    memory peak. Each epoch's ``logs`` get ``memory/host_rss_mib`` (and
    ``memory/device_allocated_mib`` on a GPU) and, after a recovery,
    ``oom/batch_size`` and ``oom/recoveries``.
    """

    flavour: ClassVar[Flavour]

    runs_fit = True
    """Its :meth:`fit` runs the model's ``fit``, again after an out-of-memory error: the
    EnergyCallback's run lasts as long as this call, not one attempt."""

    def __init__(
        self,
        *,
        factor: float = 0.5,
        min_batch_size: int = 1,
        preflight: bool = True,
        recover: bool = True,
        dirpath: str | Path | None = None,
        leak_window: int = 5,
        min_leak_mib: float = 64.0,
    ):
        super().__init__()
        self.driver = OOMDriver(OOMPlanConfig(factor, min_batch_size), leak_window, min_leak_mib)
        self.preflight = preflight
        self.recover = recover
        self.dirpath = Path("oom_guard" if dirpath is None else dirpath)
        self.batch_size: int | None = None
        self.preflight_peak_bytes: float | None = None
        self.preflight_peak_source = ""
        self._epoch = 0
        self._steps = 0
        self._epochs: list[tuple[int, dict[str, Any]]] = []

    @property
    def events(self) -> list[OOMEvent]:
        """Every out-of-memory error handled so far (:class:`OOMEvent`)."""
        return self.driver.events

    # -- the guarded fit -------------------------------------------------

    def fit(
        self,
        model: Any,
        x: Any = None,
        y: Any = None,
        *,
        batch_size: int = 32,
        epochs: int = 1,
        initial_epoch: int = 0,
        callbacks: list[Any] | None = None,
        **fit_kwargs: Any,
    ) -> Any:
        """``model.fit`` that survives out-of-memory errors by shrinking the batch.

        Args:
            x, y: arrays (or dicts or lists of arrays), sliced to any batch size;
                or ``x`` a function ``batch_size -> dataset`` (a ``tf.data.Dataset``,
                a ``PyDataset``...) and ``y`` None.
            batch_size, epochs, initial_epoch, callbacks, fit_kwargs: as ``model.fit``.

        Returns:
            The ``History`` of the whole run, the epochs of interrupted attempts included.
        """
        data = _batching(x, y)
        callbacks = [*(callbacks or []), *([] if self in (callbacks or []) else [self])]
        self._epochs = []
        if self.preflight:
            batch_size = self._preflight(model, x, y, batch_size)
        start = initial_epoch

        def train() -> Any:
            self.batch_size = batch_size
            return model.fit(
                *data(batch_size), batch_size=None if callable(x) else batch_size,
                epochs=epochs, initial_epoch=start, callbacks=callbacks, **fit_kwargs,
            )  # fmt: skip

        def recover(error: BaseException) -> None:
            nonlocal batch_size, start
            if not self.recover:
                raise error
            for callback in callbacks:  # Keras ran no end hook: end the metered run, to go on
                if isinstance(callback, EnergyCallbackArgs):  # (even if its watcher ended it)
                    callback.end_interrupted(OOM_NOTE, continue_totals=True)
            self.flavour.forget_step_functions(model)
            start = self._epoch  # the interrupted epoch runs again, from its start
            name = f"oom-epoch={self._epoch}-step={self._steps}.weights.h5"
            path = self.driver.emergency_save(
                self.dirpath / name, lambda part: model.save_weights(str(part))
            )
            batch_size = self.driver.next_batch_size(
                batch_size, error, epoch=self._epoch, step=self._steps, checkpoint=path
            )
            for callback in callbacks:  # the next run's facts (the advisor's P7)
                if isinstance(callback, EnergyCallbackArgs):
                    callback.record_oom_events(self.events)
            self.flavour.clear_initial_epoch(model)  # let the retry start where the guard says

        return self._whole_history(self.driver.run(train, recover))

    def _whole_history(self, history: Any) -> Any:
        """The returned History, with the epochs of interrupted attempts before its own."""
        history.epoch = [epoch for epoch, _ in self._epochs]
        merged: dict[str, list[Any]] = {}
        for _, logs in self._epochs:
            for key, value in logs.items():
                merged.setdefault(key, []).append(value)
        history.history = merged
        return history

    # -- pre-flight ------------------------------------------------------

    def _preflight(self, model: Any, x: Any, y: Any, batch_size: int) -> int:
        if callable(x):
            log.info("OOMGuard: no pre-flight pass for a dataset built by a function")
            return batch_size
        batch_size, peak = self.driver.shrink_until_fits(
            batch_size, lambda size: _one_step(self.flavour, model, x, y, size),
            free=lambda: self.flavour.forget_step_functions(model),
        )  # fmt: skip
        self.preflight_peak_bytes, self.preflight_peak_source = peak
        return batch_size

    # -- callback hooks --------------------------------------------------

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._steps += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        logs.update(self.driver.epoch_figures(device_memory(self.flavour.backend())))
        if self.events and self.batch_size is not None:
            logs[keys.OOM_BATCH_SIZE] = self.batch_size
            logs[keys.OOM_RECOVERIES] = len(self.events)
        self._epochs.append((epoch, dict(logs)))


def _batching(x: Any, y: Any) -> Callable[[int], tuple[Any, ...]]:
    """How to get ``fit``'s data at a batch size; a clear error for data that cannot re-batch."""
    if callable(x):
        if y is not None:
            raise OOMGuardConfigError("with x a function batch_size -> dataset, y must be None")
        return lambda batch_size: (x(batch_size),)
    if _is_dataset(x):
        raise OOMGuardConfigError(
            f"OOMGuard.fit changes the batch size, and a {type(x).__name__} has its batch size "
            "built in; pass arrays, or a function that builds the dataset from a batch size: "
            "guard.fit(model, lambda batch_size: make_dataset(batch_size), ...)"
        )
    return lambda batch_size: (x, y)


def _is_dataset(x: Any) -> bool:
    kind = type(x)
    names = {c.__name__ for c in kind.__mro__}
    return bool(names & {"DatasetV2", "PyDataset", "DataLoader", "Sequence"}) or (
        hasattr(x, "__next__") and not hasattr(x, "shape")
    )


def _one_step(flavour: Flavour, model: Any, x: Any, y: Any, batch_size: int) -> tuple[float, str]:
    """One training step on the first batch that leaves no trace; the memory peak and source."""
    flavour.build_optimizer(model)
    optimizer = model.optimizer
    weights = model.get_weights()
    slots = [flavour.to_numpy(v) for v in optimizer.variables] if optimizer else []
    first = flavour.map_structure(lambda a: a[:batch_size], (x, y))
    try:
        return measured_peak(flavour.backend(), lambda: model.train_on_batch(*first))
    finally:
        model.set_weights(weights)
        for variable, value in zip(optimizer.variables if optimizer else [], slots, strict=True):
            variable.assign(value)
        model.reset_metrics()


class OOMGuard(OOMGuardHooks, keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = OOMGuardHooks.__doc__
    flavour = KERAS3
