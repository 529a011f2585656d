"""EnergyCheckpoint for Lightning: save by energy spent, atomically, and on pre-emption signals.

The control flow is :class:`green_callbacks.policies.SaveSchedule`'s. It is a
``ModelCheckpoint``, so ``trainer.fit(ckpt_path="last")`` finds its
``last.ckpt`` and its files follow Lightning's conventions; its own triggers
replace ``ModelCheckpoint``'s epoch and step ones.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from green_callbacks.core import keys
from green_callbacks.core.atomic import commit, discard, link_atomic, part_path
from green_callbacks.lightning.callback import energy_callback, to_loggers
from green_callbacks.policies.checkpointing import CheckpointPlanConfig, SaveDecision
from green_callbacks.policies.save_schedule import (
    SaveSchedule,
    ScheduledSaves,
    keep_newest,
    newest_intact,
    numbered,
)

FILE_PATTERN = re.compile(r"^energy-epoch=\d+-step=(\d+)\.ckpt$")


class EnergyCheckpoint(ScheduledSaves, pl.callbacks.ModelCheckpoint):
    """Checkpoints every ``every_kj`` kJ, or on an interval planned from the measured save cost.

    Args:
        dirpath: where checkpoints go (default: Lightning's, under the logger's folder).
        every_kj: save every this many kJ of training. Units: kJ.
        max_overhead: without ``every_kj``: keep the energy of saving under
            this fraction of training energy (measured after the first save).
        max_loss_kj: without ``every_kj``: never leave more than this unsaved. Units: kJ.
        keep_last: how many energy checkpoints to keep (``last.ckpt`` aside).
        signals: on any of these, save after the current batch and stop
            training (``SIGTERM``, Ctrl-C's ``SIGINT``, and e.g. ``SIGUSR1`` for a
            scheduler's warning); a second Ctrl-C interrupts at once.
        save_weights_only: as ``ModelCheckpoint``.

    Each save is written to a hidden part file, flushed to disk and renamed into
    place, so the newest checkpoint is never a torn one; ``last.ckpt`` is
    replaced the same way. Logs ``energy/checkpoint_j`` (the save's measured
    energy) and ``energy/checkpoint_overhead``.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        *,
        every_kj: float | None = None,
        max_overhead: float = 0.01,
        max_loss_kj: float | None = None,
        keep_last: int = 2,
        signals: Sequence[str | int] | str = ("SIGTERM", "SIGINT"),
        save_weights_only: bool = False,
    ):
        plan = CheckpointPlanConfig(every_kj, max_overhead, max_loss_kj)
        self.schedule = SaveSchedule(plan, keep_last=keep_last, signals=signals)
        super().__init__(dirpath=dirpath, save_top_k=0, save_weights_only=save_weights_only)

    @property
    def state_key(self) -> str:
        every_kj = self.schedule.planner.config.every_kj
        return self._generate_state_key(every_kj=every_kj, dirpath=str(self.dirpath))

    # -- lifecycle -------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            energy_callback(trainer, type(self).__name__)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        session = energy_callback(trainer, type(self).__name__).session
        assert session is not None  # EnergyCallback opens it in setup
        self.schedule.start(session)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.schedule.stop()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.schedule.stop()  # teardown does not run on this path

    # -- triggers --------------------------------------------------------

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        agree = None
        if trainer.world_size > 1:  # every rank must agree to save (a collective)
            agree = lambda flag: bool(trainer.strategy.reduce_boolean_decision(flag, all=False))  # noqa: E731
        decision = self.schedule.check(epoch_end=False, agree=agree)
        if decision.save:
            self._save(trainer, decision)
        if self.schedule.signalled:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        decision = self.schedule.check(epoch_end=True)
        if decision.save:
            self._save(trainer, decision)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Saves follow energy, not validation."""

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """No extra save at the end: the trigger that fired last already saved."""

    # -- saving ----------------------------------------------------------

    def _save(self, trainer: Any, decision: SaveDecision) -> None:
        folder = Path(str(self.dirpath))
        name = f"energy-epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt"
        last = folder / f"{self.CHECKPOINT_NAME_LAST}.ckpt"

        def write() -> None:
            part = part_path(folder / name)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                trainer.save_checkpoint(part, self.save_weights_only)  # every rank; rank 0 writes
                if trainer.is_global_zero:
                    commit(part, folder / name)
                    link_atomic(folder / name, last)
                    keep_newest(folder, FILE_PATTERN, self.schedule.keep_last)
            except BaseException:
                discard(part)
                raise
            finally:
                trainer.strategy.barrier()  # every rank reaches it, even after a failed write

        cost = self.schedule.save(decision, write)
        if cost is None:
            return
        self.last_model_path = str(last)
        overhead = self.schedule.overhead()  # the job-wide total: a collective under DDP
        if trainer.is_global_zero:
            to_loggers(trainer, {keys.CHECKPOINT_J: cost, keys.CHECKPOINT_OVERHEAD: overhead})

    # -- resume ----------------------------------------------------------

    def _find_last_checkpoints(self, trainer: Any) -> set[str]:
        """What ``fit(ckpt_path="last")`` resumes from: the newest *intact* checkpoint.

        ``last.ckpt`` first, then the kept energy checkpoints, newest first; a
        torn or overwritten file (its zip records fail their checksums) is
        passed over with a warning. Loading nothing is never the silent result
        of finding only corrupt files: that raises ``CheckpointLoadError``.
        """
        lasts = sorted(
            (Path(p) for p in super()._find_last_checkpoints(trainer)),
            key=lambda p: p.stat().st_mtime, reverse=True,
        )  # fmt: skip
        chosen = newest_intact([*lasts, *numbered(Path(str(self.dirpath)), FILE_PATTERN)],
                               checkpoint_problem)  # fmt: skip
        return set() if chosen is None else {str(chosen)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "planner": self.schedule.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.schedule.load_state_dict(state_dict.get("planner", {}))


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with a checkpoint file written by ``torch.save``, or None if intact.

    ``torch.save`` writes a zip archive with a checksum per record: reading
    them all finds a torn, truncated or overwritten file without unpickling
    anything (no code from the file runs).
    """
    try:
        if not zipfile.is_zipfile(path):
            return "not a torch checkpoint archive: truncated or overwritten"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as err:
        return f"unreadable: {err}"
    return None if bad is None else f"record {bad} fails its checksum"
