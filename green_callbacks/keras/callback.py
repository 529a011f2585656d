"""EnergyCallback for Keras 3: hooks in, session calls, metrics into the shared ``logs`` dict.

Every callback after this one in the list (``CSVLogger``, ``TensorBoard``,
``EarlyStopping``, ``ModelCheckpoint``, MLflow's, the progress bar) reads the
same ``logs`` dict, so list ``EnergyCallback`` first: callbacks before it run
before the figures exist.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from green_callbacks._docs import with_arguments_of
from green_callbacks._optional import missing_extra
from green_callbacks.core.run_folder import model_facts
from green_callbacks.core.session import EnergyCallbackArgs, EnergySession
from green_callbacks.core.watch import CallWatch
from green_callbacks.errors import EnergyCallbackMissingError

try:
    import keras
except ImportError as err:  # pragma: no cover - exercised where keras is absent
    raise missing_extra(err, "keras", purpose="green_callbacks.keras") from err


@with_arguments_of(EnergyCallbackArgs)
class EnergyCallback(EnergyCallbackArgs, keras.callbacks.Callback):  # type: ignore[misc]
    """Meters training, validation, evaluation and prediction energy into ``logs``.

    Same arguments and metric keys as the Lightning callback (docs/metrics.md).
    Validation figures (``energy/val_epoch_j``...) join the epoch's ``logs``
    (and ``History``); ``evaluate()`` outside ``fit`` puts ``energy/test_j`` in
    the logs the later callbacks receive (Keras builds the dict it returns
    before callbacks run); ``predict()`` has no logs. Every figure is also in
    :attr:`last_metrics` and the summary. Keras gives callbacks no batch size,
    so per-sample figures are not reported. ``EarlyStopping`` on an energy key
    needs ``mode="min"``.
    """

    async_safe = True  # batch hooks only read the clock, never the logs' tensors

    def _init_state(self) -> None:
        self._fitting = False
        self._fit: CallWatch | None = None  # the running fit, watched: Keras has no hook on errors
        self._val_metrics: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        _BY_MODEL[model] = self  # Keras callbacks cannot see each other: policies look here

    # -- fit ---------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._fitting, self._fit = True, self._watch(("fit",))
        session = self._open_session(
            self._fit, synchronize=_cuda_synchronize()
        )  # closes a failed fit's
        session.facts.update(model_facts(self.model.weights))
        session.facts["architecture"] = type(self.model).__name__

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._val_metrics = {}
        self._require().epoch_start("train")

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._require().batch_start("train")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        session = self._require()
        metrics = session.batch_end("train", 0)
        if logs is None:
            return
        if metrics:
            logs.update(metrics)
        if self.config.progress_bar:  # the batch logs are what the progress bar shows
            logs.update(session.progress("train"))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {**self._val_metrics, **self._require().epoch_end("train")}
        self._deliver(metrics, logs)
        self._require().record_epoch(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._fitting, self._fit = False, None
        self._finish()

    # -- evaluate (validation inside fit) and predict -------------------------

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._begin(("evaluate",))
        self._require().epoch_start(self._test_phase())

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        metrics = self._require().epoch_end(self._test_phase())
        if self._in_fit():
            self._val_metrics = metrics  # joins the epoch's logs in on_epoch_end
            return
        self._deliver(metrics, logs)
        self._finish()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._begin(("predict",))
        self._require().epoch_start("predict")

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._deliver(self._require().epoch_end("predict"), logs)
        self._finish()

    # -- helpers -------------------------------------------------------------

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
            self._open_session(self._watch(calls), synchronize=_cuda_synchronize())

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


_BY_MODEL: weakref.WeakKeyDictionary[Any, EnergyCallback] = weakref.WeakKeyDictionary()


def energy_callback(model: Any, user: str) -> EnergyCallback:
    """The EnergyCallback metering ``model``'s current ``fit``; a clear error if none.

    Call it from ``on_train_begin`` or later: the EnergyCallback, listed first,
    has started its session by then.
    """
    found = _BY_MODEL.get(model)
    if found is None or found.session is None:
        raise EnergyCallbackMissingError(
            f"{user} acts on the figures of green_callbacks.keras.EnergyCallback, and this fit "
            f"has none; pass both, EnergyCallback first: "
            f"model.fit(..., callbacks=[EnergyCallback(), {user}(...)])"
        )
    return found


def _cuda_synchronize() -> Callable[[], None] | None:
    if keras.backend.backend() != "torch":
        return None
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() else None
