"""EnergyCheckpoint for Keras 3: back up by energy spent, atomically, and on pre-emption signals.

The control flow is :class:`green_callbacks.policies.SaveSchedule`'s. Resume
works the way ``keras.callbacks.BackupAndRestore`` does (the next ``fit`` with
the same ``dirpath`` restores the weights and starts at the saved epoch), and
also continues the run state: the energy totals, the schedule and
``EnergyEarlyStopping``'s history.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import keras

from green_callbacks.core import keys
from green_callbacks.core.atomic import atomic_folder, write_json_atomic
from green_callbacks.errors import ConfigError, warn_renamed
from green_callbacks.keras._compat import KERAS3
from green_callbacks.keras._hooks import Flavour, KerasHooks, energy_callback
from green_callbacks.policies.checkpointing import CheckpointPlanConfig, SaveDecision
from green_callbacks.policies.save_schedule import (
    SaveSchedule,
    ScheduledSaves,
    keep_newest,
    newest_intact,
    numbered,
)

log = logging.getLogger("green_callbacks.checkpoint")
LATEST = "latest.json"
FOLDER_PATTERN = re.compile(r"^energy-(\d+)-epoch=\d+-batch=\d+$")
STATE_NAME = "checkpoint"


class CheckpointHooks(ScheduledSaves):
    """Backs up every ``every_kj`` kJ, or on an interval planned from the measured save cost.

    Args:
        dirpath: where the backups go; a later ``fit`` with the same folder resumes.
        every_kj: save every this many kJ of training. Units: kJ.
        max_overhead: without ``every_kj``: keep the energy of saving under
            this fraction of training energy (measured after the first save).
        max_loss_kj: without ``every_kj``: never leave more than this unsaved. Units: kJ.
        keep_last: how many backups to keep.
        signals: on any of these, save after the current batch and stop training
            (``SIGTERM``, Ctrl-C's ``SIGINT``); a second Ctrl-C interrupts at once.
        delete_on_finish: remove the backups once a ``fit`` ends without a
            signal, as ``BackupAndRestore`` does by default, so that the next
            run starts afresh instead of resuming a finished one.
        backup_dir: the former name of ``dirpath`` (deprecated).

    Each backup is a folder (the weights with the optimizer's state:
    ``model.weights.h5`` for Keras 3, a TensorFlow checkpoint for tf_keras; and
    ``state.json`` with the epoch to resume at and the run state) written under a hidden part name,
    flushed to disk and renamed into place; then ``latest.json`` is replaced to
    point at it. A torn backup is never the one resumed from. Keras resumes at
    the start of an epoch: a backup taken in the middle of an epoch (a signal,
    an energy trigger) resumes at the start of that epoch with the weights of
    the save. List ``EnergyCallback`` first.
    """

    flavour: ClassVar[Flavour]
    model: Any

    def __init__(
        self,
        dirpath: str | Path | None = None,
        *,
        every_kj: float | None = None,
        max_overhead: float = 0.01,
        max_loss_kj: float | None = None,
        keep_last: int = 2,
        signals: Sequence[str | int] | str = ("SIGTERM", "SIGINT"),
        delete_on_finish: bool = True,
        backup_dir: str | Path | None = None,
    ):
        super().__init__()
        if backup_dir is not None:
            warn_renamed("EnergyCheckpoint", "backup_dir", "dirpath")
            dirpath = dirpath if dirpath is not None else backup_dir
        if dirpath is None:
            raise ConfigError(
                "EnergyCheckpoint needs the folder its backups go in: EnergyCheckpoint('backups')"
            )
        self.dirpath = Path(dirpath)
        plan = CheckpointPlanConfig(every_kj, max_overhead, max_loss_kj)
        self.schedule = SaveSchedule(plan, keep_last=keep_last, signals=signals)
        self.delete_on_finish = delete_on_finish
        self.resumed_from: Path | None = None
        self._energy: KerasHooks | None = None
        self._epoch = 0
        self._batch = 0
        self._restore_done = False

    # -- lifecycle -------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._energy = energy_callback(self.model, self)
        if self._energy.session is not None and self._energy.session.distributed is not None:
            raise ConfigError(
                f"{type(self).__name__} backs up one process's fit, and this one is a worker of "
                "a multi-worker job; use tf_keras.callbacks.BackupAndRestore, which coordinates "
                "the workers' backups (EnergyCallback goes on metering the job)"
            )
        self._energy.register_state(STATE_NAME, self.schedule)
        if not self._restore_done:  # only the first fit resumes; later ones continue in memory
            self._restore_done = True
            self._restore(self._energy)
        assert self._energy.session is not None
        self.schedule.start(self._energy.session)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.schedule.stop()
        self.flavour.clear_initial_epoch(self.model)  # a later fit starts where it is told
        if self.delete_on_finish and not self.schedule.signalled:
            shutil.rmtree(self.dirpath, ignore_errors=True)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    # -- triggers --------------------------------------------------------

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batch = batch + 1
        decision = self.schedule.check(epoch_end=False)
        if decision.save:
            self._save(decision, resume_epoch=self._epoch)
        if self.schedule.signalled:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.schedule.signalled:  # Keras ends a stopped epoch as if complete; it was not
            return
        decision = self.schedule.check(epoch_end=True)
        if decision.save:
            self._save(decision, resume_epoch=epoch + 1)
        if logs is not None and self.schedule.last_cost_j is not None:
            logs[keys.CHECKPOINT_J] = self.schedule.last_cost_j
            logs[keys.CHECKPOINT_OVERHEAD] = self.schedule.overhead()

    # -- saving and restoring ----------------------------------------------

    def _save(self, decision: SaveDecision, *, resume_epoch: int) -> None:
        # numbered, so names never collide; epoch and batch say where training resumes
        batch = self._batch if resume_epoch == self._epoch else 0
        name = f"energy-{self.planner.saves + 1:05d}-epoch={resume_epoch}-batch={batch}"
        energy = self._energy
        assert energy is not None

        def fill(part: Path) -> None:
            self.flavour.save_weights(self.model, part)
            state = {"epoch": resume_epoch, **energy.run_state()}
            (part / "state.json").write_text(json.dumps(state, allow_nan=False), "utf-8")

        def write() -> None:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            atomic_folder(self.dirpath / name, fill)
            write_json_atomic(self.dirpath / LATEST, {"folder": name})
            keep_newest(self.dirpath, FOLDER_PATTERN, self.schedule.keep_last)

        self.schedule.save(decision, write)

    def _restore(self, energy: KerasHooks) -> None:
        """Resume from the newest backup that loads; older kept ones if it does not."""
        pointer = self.dirpath / LATEST
        candidates = numbered(self.dirpath, FOLDER_PATTERN)
        try:
            newest = self.dirpath / json.loads(pointer.read_text(encoding="utf-8"))["folder"]
        except FileNotFoundError:
            return  # no backup was ever completed here: a fresh start
        except (OSError, ValueError, KeyError, TypeError):
            newest = None  # a torn pointer: the folders themselves say which is newest
        if newest is not None:
            candidates = [newest, *(c for c in candidates if c != newest)]
        loaded: dict[str, Any] = {}

        def problem(folder: Path) -> str | None:
            try:
                loaded["state"] = self._load(folder)
            except Exception as err:  # any failure to load is a reason to try the one before
                return f"{type(err).__name__}: {err}"
            return None

        folder = newest_intact(candidates, problem)
        if folder is None:
            return
        state = loaded["state"]
        energy.load_run_state(state)
        self.flavour.set_initial_epoch(self.model, int(state["epoch"]))
        self.resumed_from = folder
        log.info("EnergyCheckpoint resumed from %s at epoch %d", folder, state["epoch"])

    def _load(self, folder: Path) -> dict[str, Any]:
        """Load a backup's weights; returns its run state (version 0 read as 1)."""
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        self.flavour.load_weights(self.model, folder)
        if "version" not in state:  # version 0: energy and planner side by side
            state = {"version": 1, "energy": state.get("energy", {}), "epoch": state["epoch"],
                     "parts": {STATE_NAME: state.get("planner", {})}}  # fmt: skip
        int(state["epoch"])  # a state without its epoch is no backup
        return dict(state)


class EnergyCheckpoint(CheckpointHooks, keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = CheckpointHooks.__doc__
    flavour = KERAS3
