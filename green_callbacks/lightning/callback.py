"""EnergyCallback for Lightning: hooks in, session calls, metrics out through ``pl_module.log``.

Every logger attached to the trainer, the progress bar, ``EarlyStopping`` and
``ModelCheckpoint(monitor="energy/...")`` receive the figures unchanged.
"""

from __future__ import annotations

from typing import Any

from green_callbacks._docs import with_arguments_of
from green_callbacks._optional import missing_extra
from green_callbacks.core import keys
from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.loads import architecture, loaded, watch_torch
from green_callbacks.core.run_folder import model_facts
from green_callbacks.core.session import Distributed
from green_callbacks.errors import CallbackConfigError, EnergyCallbackMissingError, output_failed
from green_callbacks.lightning import _compat
from green_callbacks.meters.share import RankShare

try:
    import lightning.pytorch as pl
    import torch
except ImportError as err:  # pragma: no cover - exercised where lightning is absent
    raise missing_extra(err, "lightning", purpose="green_callbacks.lightning") from err

watch_torch()  # from now on, whether a model's weights were loaded is known (the advisor's P1)


BAR_REFRESH_S = 0.5
"""How often the progress bar's energy figures are updated, at most. Units: s."""


@with_arguments_of(EnergyCallbackArgs)
class EnergyCallback(EnergyCallbackArgs, pl.Callback):
    """Meters training, validation, test and prediction energy and logs it.

    Metric keys are listed in docs/metrics.md. The figures' provenance is
    logged once as hyperparameters ``energy_source/<domain>``. One per
    ``Trainer``: two would log different figures under the same keys, so
    Lightning refuses a second at construction (one state key) and so does
    :meth:`setup` for one added later; meter several sources with one,
    ``EnergyCallback(meters=[...])``.
    """

    def _init_state(self) -> None:
        # read when a training epoch starts, for the per-step path
        self._every = 1  # Trainer(log_every_n_steps); 0: no step is logged
        self._steps: Any = None  # the loop counting the steps Lightning logs at (_compat)
        self._accumulates = False  # Trainer(accumulate_grad_batches) > 1
        self._bar_due_s = 0.0  # when the progress bar's figures are next updated

    # -- lifecycle -------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        others = [c for c in trainer.callbacks if isinstance(c, EnergyCallback) and c is not self]
        if others:
            raise CallbackConfigError(
                f"this Trainer has {len(others) + 1} EnergyCallbacks; their figures would go to "
                "the same logger keys, one over the other. Keep one, metering every source: "
                "EnergyCallback(meters=[...]) (docs/meters.md)"
            )
        if self._session is not None and self._session.running:
            return
        cuda = torch.cuda.is_available()
        session = self._open_session(
            training=stage == "fit",
            synchronize=torch.cuda.synchronize if cuda else None,
            distributed=_distributed(trainer),
        )
        if trainer.is_global_zero:
            to_loggers(trainer, hyperparams=session.provenance())
        session.facts.update(model_facts(pl_module.parameters()))
        session.facts.update(architecture=architecture(pl_module, pl_module.modules()))
        session.facts["checkpoints"] = []
        if stage == "fit":
            self._read_logging(trainer)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # After Lightning restored fit(ckpt_path=...) (a load_state_dict, watched)
        if self._session is not None:
            self._session.facts["loaded_weights"] = loaded(
                pl_module, pl_module.parameters(), pl_module.modules()
            )

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self._session is not None:
            self._session.totals()  # the job-wide total for the summary (a collective under DDP)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._close_session()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """An interrupted run (a pre-emption signal, an error) still gets its summary."""
        self._close_session(note=f"the run ended by an exception: {exception!r}")

    # -- training and validation ----------------------------------------

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._read_logging(trainer)
        if self._session is not None:
            first_logged = (
                self._every > 0 and (self._steps._batches_that_stepped + 1) % self._every == 0
            )
            self._session.epoch_start("train", measure_first=first_logged)

    def _read_logging(self, trainer: Any) -> None:
        """What the per-step path needs to know of which steps Lightning logs (at setup, and
        again at each epoch's start: a fit resumed inside an epoch starts none)."""
        self._every = max(trainer.log_every_n_steps, 0)
        self._steps = _compat.step_counter(trainer)
        self._accumulates = trainer.accumulate_grad_batches > 1
        if self._steps is None:
            output_failed(_compat.NO_STEP_COUNTER, strict=self.config.strict)
            self._every = 0

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._session is not None:
            self._session.batch_start("train")

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Step figures only on the steps Lightning writes to its loggers, at the step it
        # writes the loss at, as Lightning decides it ((step + 1) % every == 0, and not
        # while gradients accumulate: a step's window spans its batches); the other
        # steps are not metered at all. Every batch runs this: it does the least it can.
        session = self._session
        if session is None:
            return
        every = self._every
        if not every:
            session.batch_end("train", batch_size(batch), measure_next=False)
            return
        if self._accumulates and self._steps._should_accumulate():  # not a step's end yet
            session.batch_part("train", batch_size(batch))
            return
        step = self._steps._batches_that_stepped
        logged = (step + 1) % every == 0
        metrics = session.batch_end(
            "train", batch_size(batch), measure_next=(step + 2) % every == 0
        )
        if not logged:
            return
        if self.config.progress_bar and trainer.progress_bar_callback is not None:
            self._show(session, trainer, pl_module, last=trainer.is_last_batch)
        if not metrics:
            return
        if session.distributed is not None:  # every rank is at the same step
            metrics = session.reduced(metrics)
        if trainer.is_global_zero:  # straight to the loggers, not through pl_module.log
            to_loggers(trainer, metrics, step=step)

    def _show(self, session: Any, trainer: Any, pl_module: Any, *, last: bool) -> None:
        """The bar's figures (energy so far, power), at most every BAR_REFRESH_S and at the
        epoch's last batch, straight into what the bar shows (``pl_module.log`` costs about
        1 ms a call, and its figures are processed again at every later step)."""
        now = session.tracker.clock()
        if now < self._bar_due_s and not last:
            return
        self._bar_due_s = now + BAR_REFRESH_S
        bar = session.progress("train")
        shown = _compat.progress_bar_metrics(trainer)
        if shown is not None:
            shown.update(bar)
        else:
            pl_module.log_dict(bar, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._log(pl_module, self._end("train"))
        if self._session is not None:  # validation has run: its metrics are in
            self._session.record_epoch(trainer.current_epoch, trainer.callback_metrics)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._session is not None:
            self._session.note_checkpoint()

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._start("val")

    def on_validation_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._batch("val", batch)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        metrics = self._end("val")
        if trainer.state.fn == "fit":  # the training epoch's end logs the run total, once a step
            metrics.pop(keys.TOTAL_J, None)
            metrics.pop(keys.CARBON_TOTAL_G, None)
        self._log(pl_module, metrics)

    # -- test and predict -----------------------------------------------

    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start("test")

    def on_test_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._batch("test", batch)

    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._log(pl_module, self._end("test"))

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start("predict")

    def on_predict_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._batch("predict", batch)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        metrics = self._end("predict")
        if trainer.is_global_zero:  # self.log is not allowed in predict: go to the loggers
            to_loggers(trainer, metrics)

    # -- helpers ---------------------------------------------------------

    def _start(self, phase: str) -> None:
        """Evaluation loops: energy per loop, no step figures (none is logged)."""
        if self._session is not None:
            self._session.epoch_start(phase, measure_first=False)

    def _batch(self, phase: str, batch: Any) -> None:
        if self._session is not None:
            self._session.batch_end(phase, batch_size(batch), measure_next=False)

    def _end(self, phase: str) -> dict[str, float]:
        return self._session.epoch_end(phase) if self._session is not None else {}

    def _log(self, pl_module: Any, metrics: dict[str, float]) -> None:
        if not metrics:
            return
        # Under DDP the session already summed the figures over ranks, so every
        # rank holds the same values; "max" keeps them and tells Lightning they are synced.
        distributed = self._session is not None and self._session.distributed is not None
        pl_module.log_dict(metrics, on_epoch=True, sync_dist=distributed, reduce_fx="max")


def to_loggers(
    trainer: Any,
    metrics: dict[str, float] | None = None,
    *,
    hyperparams: dict[str, Any] | None = None,
    step: int | None = None,
) -> None:
    """Write figures to every logger of the trainer at ``step`` (None: the global step); a
    logger that fails is warned about, once per call, and the others and training go on (a
    failing logger never ends a fit here)."""
    for logger in trainer.loggers:
        try:
            if hyperparams:
                logger.log_hyperparams(hyperparams)
            if metrics:
                logger.log_metrics(metrics, step=trainer.global_step if step is None else step)
        except Exception as err:
            output_failed(
                f"{type(logger).__name__} could not take the energy figures ({err!r}); "
                "training goes on, and the figures are in the run summary",
                strict=_strict(trainer), cause=err,
            )  # fmt: skip


def _strict(trainer: Any) -> bool:
    """Whether the trainer's EnergyCallback asked for strict mode."""
    return any(c.config.strict for c in trainer.callbacks if isinstance(c, EnergyCallback))


def energy_callback(trainer: Any, user: str) -> EnergyCallback:
    """The trainer's EnergyCallback, whose figures ``user`` acts on; a clear error if none."""
    for callback in trainer.callbacks:
        if isinstance(callback, EnergyCallback):
            return callback
    raise EnergyCallbackMissingError(
        f"{user} acts on the figures of green_callbacks.lightning.EnergyCallback, and this "
        f"Trainer has none; pass both: Trainer(callbacks=[EnergyCallback(), {user}(...)])"
    )


def _distributed(trainer: Any) -> Distributed | None:
    """Rank layout and a summing collective for a multi-process trainer, else None."""
    if trainer.world_size <= 1:
        return None
    device = trainer.strategy.root_device
    share = RankShare(
        rank=trainer.global_rank,
        local_rank=trainer.local_rank,
        world_size=trainer.world_size,
        device_index=device.index if device.type == "cuda" else None,
    )

    def reduce_sum(values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        summed: list[float] = trainer.strategy.reduce(tensor, reduce_op="sum").tolist()
        return summed

    return Distributed(share, reduce_sum)


def batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor, else 0 (unknown)."""
    first = batch[0] if type(batch) in (list, tuple) and batch else batch  # the usual: (x, y)
    if type(first) is torch.Tensor and first.ndim:  # every step runs this: the quick path
        return first.shape[0]
    if isinstance(batch, torch.Tensor):
        return 1  # a single sample without a batch dimension
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            size = batch_size(item)
            if size:
                return size
    return 0
