"""EnergyCheckpoint for Lightning: save by energy spent, atomically, and on pre-emption signals.

The schedule is :class:`green_callbacks.policies.CheckpointPlanner`'s. It is a
``ModelCheckpoint``, so ``trainer.fit(ckpt_path="last")`` finds its
``last.ckpt`` and its files follow Lightning's conventions; its own triggers
replace ``ModelCheckpoint``'s epoch and step ones.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from green_callbacks.core import keys
from green_callbacks.core.session import EnergySession
from green_callbacks.core.signals import SignalLatch
from green_callbacks.core.tracker import Window
from green_callbacks.lightning.callback import EnergyCallback, energy_callback
from green_callbacks.policies.checkpointing import (
    CheckpointPlanConfig,
    CheckpointPlanner,
    SaveDecision,
    SaveReason,
)

log = logging.getLogger(__name__)
FILE_PATTERN = re.compile(r"^energy-epoch=(\d+)-step=(\d+)\.ckpt$")


class EnergyCheckpoint(pl.callbacks.ModelCheckpoint):
    """Checkpoints every ``every_kj`` kJ, or on an interval planned from the measured save cost.

    Args:
        dirpath: where checkpoints go (default: Lightning's, under the logger's folder).
        every_kj: save every this many kJ of training. Units: kJ.
        max_overhead: without ``every_kj``: keep the energy of saving under
            this fraction of training energy (measured after the first save).
        max_loss_kj: without ``every_kj``: never leave more than this unsaved. Units: kJ.
        keep_last: how many energy checkpoints to keep (``last.ckpt`` aside).
        signals: on any of these, save after the current batch and stop
            training (``SIGTERM``, and e.g. ``SIGUSR1`` for a scheduler's warning).
        save_weights_only: as ``ModelCheckpoint``.

    Each save is written to a temporary file and renamed into place, so the
    newest checkpoint is never a torn one; ``last.ckpt`` is replaced the same
    way. Logs ``energy/checkpoint_j`` (the save's measured energy) and
    ``energy/checkpoint_overhead``.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        *,
        every_kj: float | None = None,
        max_overhead: float = 0.01,
        max_loss_kj: float | None = None,
        keep_last: int = 2,
        signals: Sequence[str | int] = ("SIGTERM",),
        save_weights_only: bool = False,
    ):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 checkpoint, got {keep_last}")
        super().__init__(dirpath=dirpath, save_top_k=0, save_weights_only=save_weights_only)
        self.plan = CheckpointPlanConfig(every_kj, max_overhead, max_loss_kj)
        self.planner = CheckpointPlanner(self.plan)
        self.keep_last = keep_last
        self.signals = tuple(signals)
        self.last_decision: SaveDecision | None = None
        self._energy: EnergyCallback | None = None
        self._latch: SignalLatch | None = None
        self._since: Window | None = None
        self._saving = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(every_kj=self.plan.every_kj, dirpath=str(self.dirpath))

    # -- lifecycle -------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._energy = energy_callback(trainer, type(self).__name__)
            self._latch = SignalLatch(self.signals).install()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._latch is not None:
            self._latch.restore()
            self._latch = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._since = self._session().tracker.open("phase", "since_checkpoint", exact=False)

    # -- triggers --------------------------------------------------------

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        signal = self._latch.pop() if self._latch is not None else ""
        if trainer.world_size > 1:  # every rank must agree to save (a collective)
            signal = (
                "signal"
                if trainer.strategy.reduce_boolean_decision(bool(signal), all=False)
                else ""
            )
        decision = self.planner.decide(self._since_j(), epoch_end=False, signal=signal)
        if decision.save:
            self._save(trainer, pl_module, decision)
        if decision.reason is SaveReason.SIGNAL:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        decision = self.planner.decide(self._since_j(), epoch_end=True)
        if decision.save:
            self._save(trainer, pl_module, decision)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Saves follow energy, not validation."""

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """No extra save at the end: the trigger that fired last already saved."""

    # -- saving ----------------------------------------------------------

    def _session(self) -> EnergySession:
        session = self._energy.session if self._energy is not None else None
        if session is None:
            raise RuntimeError("EnergyCheckpoint used outside Trainer.fit()")
        return session

    def _since_j(self) -> float:
        session = self._session()
        if self._since is None:
            return 0.0
        since = session.tracker.peek(self._since)
        return session.reduced({"j": since})["j"] if session.distributed else since

    def _save(self, trainer: Any, pl_module: Any, decision: SaveDecision) -> None:
        session = self._session()
        window = session.tracker.open("phase", "checkpoint")
        folder = Path(str(self.dirpath))
        name = f"energy-epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt"
        part = folder / f".{name}.part"
        self._saving = True  # the planner state inside the file counts this save
        try:
            trainer.save_checkpoint(part, self.save_weights_only)
        finally:
            self._saving = False
        if trainer.is_global_zero:
            os.replace(part, folder / name)
            _replace_with_link(folder / name, folder / f"{self.CHECKPOINT_NAME_LAST}.ckpt")
            self._prune(folder)
        trainer.strategy.barrier()
        cost = session.tracker.close(window).energy_j
        if session.distributed is not None:
            cost = session.reduced({"j": cost})["j"]
        self.planner.record(cost)
        self._since = session.tracker.open("phase", "since_checkpoint", exact=False)
        self.last_model_path = str(folder / f"{self.CHECKPOINT_NAME_LAST}.ckpt")
        self.last_decision = decision
        total = session.totals()[keys.TOTAL_J]  # the job-wide total (a collective under DDP)
        if trainer.is_global_zero:
            overhead = {
                keys.CHECKPOINT_J: cost,
                keys.CHECKPOINT_OVERHEAD: self.planner.overhead(total),
            }
            for logger in trainer.loggers:
                logger.log_metrics(overhead, step=trainer.global_step)
            log.info("EnergyCheckpoint saved %s (%s; %.3g J)", name, decision.message, cost)

    def _prune(self, folder: Path) -> None:
        found = []
        for path in folder.iterdir():
            match = FILE_PATTERN.match(path.name)
            if match:
                found.append((int(match.group(2)), path))
        for _, path in sorted(found)[: -self.keep_last]:
            path.unlink(missing_ok=True)

    # -- resume ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "planner": self.planner.state_dict(saving=self._saving)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.planner.load_state_dict(state_dict.get("planner", {}))


def _replace_with_link(target: Path, link: Path) -> None:
    """Point ``link`` at ``target`` atomically: a hard link (a copy where links fail) renamed in."""
    part = link.with_name(f".{link.name}.part")
    part.unlink(missing_ok=True)
    try:
        os.link(target, part)
    except OSError:
        shutil.copyfile(target, part)
    os.replace(part, link)
