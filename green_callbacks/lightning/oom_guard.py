"""OOMGuard for Lightning: find out-of-memory errors before they cost energy, survive them after.

The control flow is :class:`green_callbacks.policies.OOMDriver`'s. To go on
inside the same ``trainer.fit`` after an OOM, the guard runs the fit loop the
way Lightning's own ``BatchSizeFinder`` does (the internals it needs are in
:mod:`green_callbacks.lightning._compat`): on an OOM it writes an emergency
checkpoint, shrinks the batch size, rebuilds the dataloaders and restarts the
loop from the checkpoint's progress. Weights and optimizer state stay in memory
untouched: an OOM in the forward or backward pass happens before the optimizer step.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.parsing import (
    lightning_getattr,
    lightning_hasattr,
    lightning_setattr,
)

from green_callbacks.core import keys
from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.memory import device_memory, measured_peak
from green_callbacks.errors import OOMGuardConfigError
from green_callbacks.lightning import _compat
from green_callbacks.lightning.callback import to_loggers
from green_callbacks.policies.memory import OOMEvent, OOMPlanConfig
from green_callbacks.policies.oom_driver import OOMDriver

log = logging.getLogger("green_callbacks.oom_guard")
_RESTART_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"


class OOMGuard(pl.Callback):
    """Pre-flight check, recovery from out-of-memory errors, and a leak watch.

    Args:
        batch_size_attr: where the batch size lives, found as Lightning's batch
            size finder finds it: an attribute (or ``hparams`` entry) of the
            LightningModule or its data module, which ``train_dataloader()``
            reads when it builds its loader.
        factor: after an OOM the batch size is multiplied by this.
        min_batch_size: the floor; an OOM at the floor raises :class:`OOMFloorError`.
        preflight: before training, run one forward and backward pass on the
            first training batch (weights, buffers and gradients are restored
            after it) and shrink the batch size until it fits.
        recover: catch OOMs during training, save, shrink and go on. Single
            process only: under DDP an OOM on one rank leaves the others in a
            collective, so there the guard only pre-flights and watches.
        dirpath: where emergency checkpoints go (default ``<default_root_dir>/oom_guard``).
        leak_window: epochs the memory trend is fitted over.
        min_leak_mib: average growth per epoch that counts as a leak. Units: MiB.

    After training, :attr:`events` lists every OOM handled, :attr:`preflight_peak_bytes`
    the memory peak of the pre-flight pass. Logs ``oom/batch_size``,
    ``oom/recoveries``, ``memory/host_rss_mib`` and, on a GPU,
    ``memory/device_allocated_mib``.
    """

    def __init__(
        self,
        batch_size_attr: str = "batch_size",
        *,
        factor: float = 0.5,
        min_batch_size: int = 1,
        preflight: bool = True,
        recover: bool = True,
        dirpath: str | Path | None = None,
        leak_window: int = 5,
        min_leak_mib: float = 64.0,
    ):
        self.batch_size_attr = batch_size_attr
        self.driver = OOMDriver(OOMPlanConfig(factor, min_batch_size), leak_window, min_leak_mib)
        self.preflight = preflight
        self.recover = recover
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.preflight_peak_bytes: float | None = None
        self.preflight_peak_source = ""

    @property
    def events(self) -> list[OOMEvent]:
        """Every out-of-memory error handled so far (:class:`OOMEvent`)."""
        return self.driver.events

    # -- lifecycle -------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        if not lightning_hasattr(pl_module, self.batch_size_attr):
            raise OOMGuardConfigError(
                f"OOMGuard changes the batch size through {self.batch_size_attr!r}, and neither "
                f"the LightningModule, its hparams nor its data module has it; store the batch "
                f"size there (self.{self.batch_size_attr} = 64) and build train_dataloader() "
                f"from it, or name yours with OOMGuard(batch_size_attr=...)"
            )
        if trainer.world_size > 1 and self.recover:
            log.warning("OOMGuard: recovery is single-process only; under DDP it only "
                        "pre-flights and watches memory")  # fmt: skip
        if self.preflight or self.recover:
            _compat.wrap_fit_loop(trainer, lambda run: self._guarded_run(trainer, run))

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        _compat.unwrap_fit_loop(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        device = pl_module.device
        memory = device_memory("torch", device) if device.type == "cuda" else None
        figures = self.driver.epoch_figures(memory)
        pl_module.log_dict(  # under DDP: the largest rank's figure
            figures, on_epoch=True, reduce_fx="max", sync_dist=trainer.world_size > 1
        )

    # -- the guarded fit loop --------------------------------------------

    def _guarded_run(self, trainer: Any, original: Callable[[], None]) -> Callable[[], None]:
        restarted: list[bool] = []

        def train() -> None:
            with warnings.catch_warnings():
                if restarted:  # the guard's own restart; its warning said what happened
                    warnings.filterwarnings("ignore", message=_RESTART_WARNING)
                original()

        def recover(error: BaseException) -> None:
            if not (self.recover and trainer.world_size == 1):
                raise error
            self._recover(trainer, error)
            restarted.append(True)

        def run() -> None:
            if self.preflight:
                self._preflight(trainer)
            self.driver.run(train, recover)

        return run

    def _batch_size(self, trainer: Any) -> int:
        size = lightning_getattr(trainer.lightning_module, self.batch_size_attr)
        if isinstance(size, bool) or not isinstance(size, int):
            raise OOMGuardConfigError(
                f"OOMGuard needs an integer batch size in {self.batch_size_attr!r}, found {size!r}"
            )
        return size

    def _shrink(self, trainer: Any, batch_size: int) -> None:
        lightning_setattr(trainer.lightning_module, self.batch_size_attr, batch_size)
        _compat.reset_loaders(trainer)  # rebuilt from the new size when the loop runs
        to_loggers(
            trainer, {keys.OOM_BATCH_SIZE: batch_size, keys.OOM_RECOVERIES: len(self.events)}
        )
        for callback in trainer.callbacks:  # the run folder's facts (the advisor's P7)
            if isinstance(callback, EnergyCallbackArgs):
                callback.record_oom_events(self.events)

    def _recover(self, trainer: Any, error: BaseException) -> None:
        _free_memory(trainer)
        checkpoint = _compat.dump_checkpoint(trainer)
        folder = self.dirpath or Path(trainer.default_root_dir) / "oom_guard"
        name = f"oom-epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt"
        path = self.driver.emergency_save(
            folder / name, lambda part: trainer.strategy.save_checkpoint(checkpoint, part)
        )
        batch_size = self.driver.next_batch_size(
            self._batch_size(trainer), error, epoch=trainer.current_epoch,
            step=trainer.global_step, checkpoint=path,
        )  # fmt: skip
        # Continue from the progress the checkpoint recorded: Lightning's mid-epoch restart
        # retries the failed batch; the weights and optimizer in memory are those of the save.
        trainer.fit_loop.load_state_dict(checkpoint["loops"]["fit_loop"])
        self._shrink(trainer, batch_size)

    # -- pre-flight ------------------------------------------------------

    def _preflight(self, trainer: Any) -> None:
        module = trainer.lightning_module
        if not module.automatic_optimization:
            log.info("OOMGuard: no pre-flight pass with manual optimization (it would step)")
            return

        def attempt(batch_size: int) -> tuple[float, str] | None:
            batch = _compat.first_train_batch(trainer)
            return None if batch is None else _one_pass(module, batch)

        _, peak = self.driver.shrink_until_fits(
            self._batch_size(trainer), attempt, free=lambda: _free_memory(trainer),
            apply=lambda size: self._shrink(trainer, size),
        )  # fmt: skip
        if peak is not None:
            self.preflight_peak_bytes, self.preflight_peak_source = peak


def _one_pass(module: Any, batch: Any) -> tuple[float, str]:
    """A forward and backward pass that leaves no trace; returns the memory peak and its source."""
    device = module.device
    buffers = {name: b.detach().clone() for name, b in module.named_buffers()}

    def step() -> None:
        with _muted(module):
            output = module.training_step(_compat.to_device(module, batch), 0)
            loss = output["loss"] if isinstance(output, dict) else output
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                loss.backward()  # type: ignore[no-untyped-call]

    try:
        return measured_peak("torch" if device.type == "cuda" else "cpu", step, device)
    finally:
        module.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                buffer.copy_(buffers[name])


@contextmanager
def _muted(module: Any) -> Iterator[None]:
    """``self.log`` calls inside the pre-flight step go nowhere."""
    module.log = module.log_dict = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del module.log, module.log_dict


def _free_memory(trainer: Any) -> None:
    for optimizer in trainer.optimizers:
        optimizer.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
