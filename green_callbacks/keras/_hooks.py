"""The hooks every Keras-style callback shares (Keras 3 and tf_keras, Keras 2).

Both call the same hooks with the same ``logs`` dicts; only the base class and
a few model internals differ. This module imports neither Keras: the mixins
here and in ``green_callbacks.keras``'s policy modules hold the hooks, and
``green_callbacks.keras`` and ``green_callbacks.tf_keras`` put them on their
own ``Callback`` with their :class:`Flavour`, the one place where the two differ.
"""

from __future__ import annotations

import functools
import re
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.loads import loaded, on_save, saves_watched
from green_callbacks.core.run_folder import model_facts
from green_callbacks.core.session import Distributed, EnergySession
from green_callbacks.core.watch import CallWatch
from green_callbacks.errors import EnergyCallbackMissingError, FrameworkAPIError

BY_MODEL: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
"""model -> the EnergyCallback metering its fit: Keras callbacks cannot see each other."""


class Flavour:
    """What the policy callbacks need from a Keras whose models they act on."""

    package = ""
    """The green_callbacks module of this Keras, for messages: ``green_callbacks.keras``."""
    library = ""
    """The Keras's name in messages: ``Keras``, ``tf_keras``."""
    checked = ("", "")
    """Oldest and newest releases of it whose internals the flavour was checked against."""

    def version(self) -> str:
        """The installed release."""
        raise NotImplementedError

    def require(self, model: Any, name: str) -> None:
        """A :class:`FrameworkAPIError` naming the releases if ``model`` lacks the internal
        ``name`` green_callbacks resumes ``fit`` with (a release that changed it)."""
        if not hasattr(model, name):
            raise FrameworkAPIError(
                f"{self.library} {self.version()} models have no {name!r}, which "
                f"green_callbacks uses to resume fit at an epoch (checked with {self.library} "
                f"{self.checked[0]} to {self.checked[1]}); install a {self.library} release in "
                "that range or report the new version to green_callbacks"
            )

    def backend(self) -> str:
        """The array library that runs the model: ``torch``, ``tensorflow``, ``jax``..."""
        raise NotImplementedError

    def to_numpy(self, value: Any) -> Any:
        """A variable's value as a NumPy array."""
        raise NotImplementedError

    def map_structure(self, function: Callable[[Any], Any], structure: Any) -> Any:
        """``function`` on every array of nested lists, tuples and dicts."""
        raise NotImplementedError

    def build_optimizer(self, model: Any) -> None:
        """Create the optimizer's variables now, if the model has one and they do not exist."""
        raise NotImplementedError

    def set_initial_epoch(self, model: Any, epoch: int) -> None:
        """Make the next ``fit`` start at ``epoch`` (Keras callbacks have no public way)."""
        raise NotImplementedError

    def clear_initial_epoch(self, model: Any) -> None:
        """Let a later ``fit`` start at the epoch it is given."""
        raise NotImplementedError

    def save_weights(self, model: Any, folder: Path) -> None:
        """Write the model's weights and its optimizer's state into ``folder``."""
        raise NotImplementedError

    def load_weights(self, model: Any, folder: Path) -> None:
        """Read back what :meth:`save_weights` wrote; raises if it is incomplete."""
        raise NotImplementedError

    def forget_step_functions(self, model: Any) -> None:
        """Drop the compiled step functions an error interrupted; the next call compiles afresh.

        (On TensorFlow a ``tf.function`` whose first call failed cannot create
        the optimizer's variables on a later call.)
        """
        for name in ("train_function", "test_function", "predict_function"):
            if hasattr(model, name):
                setattr(model, name, None)


def _architecture(model: Any) -> str:
    """The model's name (``keras.applications`` names theirs: ``resnet50``, ``vgg16``), or its
    class's when the name is one Keras gives by default (``functional_3``, ``sequential``)."""
    name = str(getattr(model, "name", "") or "")
    if not name or re.fullmatch(r"(functional|sequential|model)(_\d+)?", name):
        return type(model).__name__
    return name


def loop_local(model: Any, names: tuple[str, ...], local: str) -> Any:
    """The local variable ``local`` of the innermost running ``model.<name>`` call (``fit``,
    ``evaluate``, ``predict``), or None."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in names and frame.f_locals.get("self") is model:
            return frame.f_locals.get(local)
        frame = frame.f_back
    return None


class LoopSizes:
    """Samples in a run of batches of one Keras loop, from the loop's data adapter.

    Keras gives callbacks batch indices, not batch sizes; its data adapter knows
    both the batch size and the last, partial batch (``fit(x, y, batch_size=32)``
    on 1000 samples: 31 batches of 32 and one of 8).

    Example:
        >>> sizes = LoopSizes(batch_size=32, num_batches=32, partial=8)
        >>> sizes.samples(0, 0), sizes.samples(30, 31), sizes.samples(0, 31)
        (32, 40, 1000)
    """

    __slots__ = ("batch_size", "last", "partial")

    def __init__(self, batch_size: int, num_batches: int | None, partial: int | None):
        self.batch_size = batch_size
        self.last = None if num_batches is None else num_batches - 1
        self.partial = partial

    def samples(self, first: int, last: int) -> int:
        """Samples in batches ``first`` to ``last`` (indices from 0, both included)."""
        count = (last - first + 1) * self.batch_size
        if self.partial and last == self.last:
            count -= self.batch_size - self.partial
        return count

    @classmethod
    def of_loop(cls, model: Any, names: tuple[str, ...]) -> LoopSizes | None:
        """The sizes of the innermost running ``model.<name>`` loop (``fit``, ``evaluate``,
        ``predict``), read from its ``epoch_iterator``; None where they are not known (a
        dataset or generator of unknown batch size, tf_keras, a Keras that renamed them)."""
        adapter = getattr(loop_local(model, names, "epoch_iterator"), "data_adapter", None)
        if adapter is None:
            return None
        try:
            size, batches = adapter.batch_size, adapter.num_batches
            partial = adapter.partial_batch_size if adapter.has_partial_batch else None
        except Exception:  # an adapter that cannot say: sizes unknown
            return None
        if not isinstance(size, int) or size < 1:
            return None
        return cls(size, batches if isinstance(batches, int) else None, partial)


def energy_callback(model: Any, user: Any) -> KerasHooks:
    """The EnergyCallback metering ``model``'s current ``fit``; a clear error if none.

    ``user`` is the policy callback asking. Call it from ``on_train_begin`` or
    later: the EnergyCallback, listed first, has started its session by then.
    """
    found = BY_MODEL.get(model)
    if not isinstance(found, KerasHooks) or found.session is None:
        name, package = type(user).__name__, getattr(user, "flavour", Flavour()).package
        raise EnergyCallbackMissingError(
            f"{name} acts on the figures of {package}.EnergyCallback, and this fit has none; "
            f"pass both, EnergyCallback first: "
            f"model.fit(..., callbacks=[EnergyCallback(), {name}(...)])"
        )
    return found


class KerasHooks(EnergyCallbackArgs):
    """The hooks; subclasses add the framework's ``Callback`` base and say how to synchronise."""

    model: Any

    def _synchronizer(self) -> Callable[[], None] | None:
        """What to call before readings that must see finished device work (None: nothing)."""
        return None

    def _distributed(self) -> Distributed | None:
        """How this process takes part in a multi-worker job (None: it is the whole job)."""
        return None

    def _init_state(self) -> None:
        self._fitting = False
        self._fit: CallWatch | None = None  # the running fit, watched: Keras has no hook on errors
        self._val_metrics: dict[str, float] = {}
        self._bar = True  # the figures go on a progress bar fit shows (set when it begins)
        self._sizes: dict[str, LoopSizes | None] = {}  # each running loop's batch sizes
        self._first = 0  # the training step's first batch (steps_per_execution > 1: several)
        self._last: dict[str, int] = {}  # each inference loop's last batch so far
        self.last_metrics: dict[str, float] = {}

    def set_model(self, model: Any) -> None:
        super().set_model(model)  # type: ignore[misc]  # the framework's Callback, next in line
        BY_MODEL[model] = self  # Keras callbacks cannot see each other: policies look here

    # -- fit ---------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._fitting, self._fit = True, self._watch(("fit",))
        # A progress bar only with verbose 1 ("auto" is 1); 0 is silent, 2 a line an epoch:
        # the bar's figures (~6 us a step) only for a bar.
        verbose = (getattr(self, "params", None) or {}).get("verbose", 1)
        self._bar = self.config.progress_bar and verbose not in (0, 2)
        session = self._open_session(  # closes a failed fit's
            self._fit, training=True, synchronize=self._synchronizer(),
            distributed=self._distributed(),
        )  # fmt: skip
        session.facts.update(model_facts(self.model.weights))
        session.facts["architecture"] = _architecture(self.model)
        session.facts["loaded_weights"] = loaded(self.model, self.model.weights)
        if saves_watched(self.model):  # every save during the fit is a checkpoint
            session.facts["checkpoints"] = []
            on_save(self.model, functools.partial(session.note_checkpoint, "model.save"))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._val_metrics = {}
        self._sizes["train"] = LoopSizes.of_loop(self.model, ("fit",))
        self._require().epoch_start("train")

    # The batch hooks run at every step of every fit: they do the least they can.

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._first = batch
        (self._session or self._require()).batch_start("train")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        session = self._session or self._require()
        sizes = self._sizes.get("train")
        metrics = session.batch_end("train", sizes.samples(self._first, batch) if sizes else 0)
        if logs is None:
            return
        if metrics:
            logs.update(metrics)
        if self._bar:  # the batch logs are what the bar shows
            logs.update(session.progress("train"))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {**self._val_metrics, **self._require().epoch_end("train")}
        self._deliver(metrics, logs)
        self._require().record_epoch(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        on_save(self.model, None)
        self._fitting, self._fit = False, None
        self._finish()

    # -- evaluate (validation inside fit) and predict -------------------------

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._begin(("evaluate",))
        self._begin_loop(self._test_phase(), "evaluate")

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._last["test"] = batch

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        metrics = self._end_loop(self._test_phase(), "test")
        if self._in_fit():
            self._val_metrics = metrics  # joins the epoch's logs in on_epoch_end
            return
        self._deliver(metrics, logs)
        self._finish()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._begin(("predict",))
        self._begin_loop("predict", "predict")

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._last["predict"] = batch

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._deliver(self._end_loop("predict", "predict"), logs)
        self._finish()

    # -- helpers -------------------------------------------------------------

    def _begin_loop(self, phase: str, call: str) -> None:
        """An inference loop begins: its batch sizes are read, its window opens."""
        key = "test" if call == "evaluate" else call  # the hooks' name for the loop
        self._sizes[key] = LoopSizes.of_loop(self.model, (call,))
        self._last.pop(key, None)
        self._require().epoch_start(phase)

    def _end_loop(self, phase: str, hook: str) -> dict[str, float]:
        """An inference loop ended: its samples are counted (the batches its hooks saw, where
        the sizes are known: the advisor's inference J/sample), its figures returned."""
        session = self._require()
        sizes = self._sizes.pop(hook, None)
        last = self._last.pop(hook, None)
        if sizes is not None and last is not None:
            session.batch_part(phase, sizes.samples(0, last))
        return session.epoch_end(phase)

    def _in_fit(self) -> bool:
        """Inside a ``fit`` that is still running (not one an exception ended)."""
        if self._fitting and self._fit is not None and not self._fit.alive():
            self._fitting, self._fit = False, None
        return self._fitting

    def _test_phase(self) -> str:
        return "val" if self._in_fit() else "test"

    def _watch(self, calls: tuple[str, ...]) -> CallWatch | None:
        model = self.model  # or a wrapper whose fit runs the model's (OOMGuard.fit retries it)
        return CallWatch.find(
            lambda owner: owner is model or getattr(owner, "runs_fit", False) is True, calls
        )

    def _begin(self, calls: tuple[str, ...] = ("fit", "evaluate", "predict")) -> None:
        """Open a run for a standalone evaluate or predict (one a failed fit left is closed)."""
        fit_ended = self._fitting and not self._in_fit()
        if self._session is None or fit_ended:
            self._open_session(self._watch(calls), synchronize=self._synchronizer())

    def _finish(self) -> None:
        self._close_session()

    def _require(self) -> EnergySession:
        if self._session is None:
            self._begin()
        assert self._session is not None
        return self._session

    def _deliver(self, metrics: dict[str, float], logs: dict[str, Any] | None) -> None:
        self.last_metrics = metrics
        if logs is not None:
            logs.update(metrics)

    @property
    def provenance(self) -> dict[str, str]:
        """Where the figures come from (available while a run is metered)."""
        return self._session.provenance() if self._session is not None else {}
