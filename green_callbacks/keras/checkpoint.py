"""EnergyCheckpoint for Keras 3: back up by energy spent, atomically, and on pre-emption signals.

The schedule is :class:`green_callbacks.policies.CheckpointPlanner`'s. Resume
works the way ``keras.callbacks.BackupAndRestore`` does (the next ``fit`` with
the same ``backup_dir`` restores the weights and starts at the saved epoch),
and also continues the energy totals and the schedule.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from green_callbacks.core import keys
from green_callbacks.core.session import write_json_atomic
from green_callbacks.core.signals import SignalLatch
from green_callbacks.core.tracker import Window
from green_callbacks.keras.callback import EnergyCallback, energy_callback
from green_callbacks.policies.checkpointing import (
    CheckpointPlanConfig,
    CheckpointPlanner,
    SaveDecision,
    SaveReason,
)

log = logging.getLogger(__name__)
LATEST = "latest.json"
FOLDER_PATTERN = re.compile(r"^energy-(\d+)-epoch=\d+-batch=\d+$")


class EnergyCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Backs up every ``every_kj`` kJ, or on an interval planned from the measured save cost.

    Args:
        backup_dir: where the backups go; a later ``fit`` with the same folder resumes.
        every_kj: save every this many kJ of training. Units: kJ.
        max_overhead: without ``every_kj``: keep the energy of saving under
            this fraction of training energy (measured after the first save).
        max_loss_kj: without ``every_kj``: never leave more than this unsaved. Units: kJ.
        keep_last: how many backups to keep.
        signals: on any of these, save after the current batch and stop training.
        delete_on_finish: remove the backups once a ``fit`` ends without a
            signal, as ``BackupAndRestore`` does by default, so that the next
            run starts afresh instead of resuming a finished one.

    Each backup is a folder (``model.weights.h5`` with the optimizer, and
    ``state.json`` with the epoch to resume at, the energy totals and the
    schedule) written under a temporary name and renamed into place; then
    ``latest.json`` is replaced to point at it. A torn backup is never the one
    resumed from. Keras resumes at the start of an epoch: a backup taken in
    the middle of an epoch (a signal, an energy trigger) resumes at the start
    of that epoch with the weights of the save. List ``EnergyCallback`` first.
    """

    def __init__(
        self,
        backup_dir: str | Path,
        *,
        every_kj: float | None = None,
        max_overhead: float = 0.01,
        max_loss_kj: float | None = None,
        keep_last: int = 2,
        signals: Sequence[str | int] = ("SIGTERM",),
        delete_on_finish: bool = True,
    ):
        super().__init__()
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 backup, got {keep_last}")
        self.backup_dir = Path(backup_dir)
        self.plan = CheckpointPlanConfig(every_kj, max_overhead, max_loss_kj)
        self.planner = CheckpointPlanner(self.plan)
        self.keep_last = keep_last
        self.signals = tuple(signals)
        self.delete_on_finish = delete_on_finish
        self.last_decision: SaveDecision | None = None
        self.last_cost_j: float | None = None
        self.resumed_from: Path | None = None
        self._energy: EnergyCallback | None = None
        self._latch: SignalLatch | None = None
        self._since: Window | None = None
        self._epoch = 0
        self._batch = 0
        self._restore_done = False
        self._signalled = False

    # -- lifecycle -------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._energy = energy_callback(self.model, type(self).__name__)
        self._signalled = False
        if not self._restore_done:  # only the first fit resumes; later ones continue in memory
            self._restore_done = True
            self._restore()
        if self._latch is not None:  # a fit that raised never reached on_train_end
            self._latch.restore()
        self._latch = SignalLatch(self.signals).install()
        self._since = self._session().tracker.open("phase", "since_checkpoint", exact=False)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._latch is not None:
            self._latch.restore()
            self._latch = None
        self.model._initial_epoch = None  # a later fit of this model starts where it is told
        if self.delete_on_finish and not self._signalled:
            shutil.rmtree(self.backup_dir, ignore_errors=True)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    # -- triggers --------------------------------------------------------

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batch = batch + 1
        signal = self._latch.pop() if self._latch is not None else ""
        decision = self.planner.decide(self._since_j(), epoch_end=False, signal=signal)
        if decision.save:
            self._save(decision, resume_epoch=self._epoch)
        if decision.reason is SaveReason.SIGNAL:
            self._signalled = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._signalled:  # Keras ends a stopped epoch as if complete; it was not
            return
        decision = self.planner.decide(self._since_j(), epoch_end=True)
        if decision.save:
            self._save(decision, resume_epoch=epoch + 1)
        if logs is not None and self.last_cost_j is not None:
            logs[keys.CHECKPOINT_J] = self.last_cost_j
            logs[keys.CHECKPOINT_OVERHEAD] = self.planner.overhead(self._total_j())

    # -- saving and restoring ----------------------------------------------

    def _session(self) -> Any:
        session = self._energy.session if self._energy is not None else None
        if session is None:
            raise RuntimeError("EnergyCheckpoint used outside model.fit()")
        return session

    def _since_j(self) -> float:
        return 0.0 if self._since is None else float(self._session().tracker.peek(self._since))

    def _total_j(self) -> float:
        return float(self._session().totals()[keys.TOTAL_J])

    def _save(self, decision: SaveDecision, *, resume_epoch: int) -> None:
        session = self._session()
        window = session.tracker.open("phase", "checkpoint")
        # numbered, so names never collide; epoch and batch say where training resumes
        batch = self._batch if resume_epoch == self._epoch else 0
        name = f"energy-{self.planner.saves + 1:05d}-epoch={resume_epoch}-batch={batch}"
        folder = self.backup_dir / name
        part = self.backup_dir / f".{name}.part"
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        self.model.save_weights(str(part / "model.weights.h5"))
        state = {
            "epoch": resume_epoch,
            "energy": self._energy.state_dict() if self._energy is not None else {},
            "planner": self.planner.state_dict(saving=True),
        }
        (part / "state.json").write_text(json.dumps(state), encoding="utf-8")
        os.replace(part, folder)
        write_json_atomic(self.backup_dir / LATEST, {"folder": name})
        self._prune()
        cost = session.tracker.close(window).energy_j
        self.planner.record(cost)
        self._since = session.tracker.open("phase", "since_checkpoint", exact=False)
        self.last_decision, self.last_cost_j = decision, cost
        log.info("EnergyCheckpoint saved %s (%s; %.3g J)", folder, decision.message, cost)

    def _prune(self) -> None:
        found = []
        for path in self.backup_dir.iterdir():
            match = FOLDER_PATTERN.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        for _, path in sorted(found)[: -self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)

    def _restore(self) -> None:
        pointer = self.backup_dir / LATEST
        if not pointer.exists():
            return
        folder = self.backup_dir / json.loads(pointer.read_text(encoding="utf-8"))["folder"]
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:  # its variables are in the file
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(str(folder / "model.weights.h5"))
        if self._energy is not None:
            self._energy.load_state_dict(state.get("energy", {}))
        self.planner.load_state_dict(state.get("planner", {}))
        self.model._initial_epoch = int(state["epoch"])
        self.resumed_from = folder
        log.info("EnergyCheckpoint resumed from %s at epoch %d", folder, state["epoch"])
