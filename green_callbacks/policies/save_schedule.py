"""The control flow of every framework's ``EnergyCheckpoint``, without the framework.

:class:`SaveSchedule` owns what the adapters used to repeat: the
:class:`CheckpointPlanner`, the window of energy spent since the last save,
the :class:`~green_callbacks.core.signals.SignalLatch`, the measured save
(a ``checkpoint`` window around the framework's write) and keeping the newest
files. An adapter only says when a batch or an epoch ended, how to write, and
stops training when :attr:`SaveSchedule.signalled`.

Example:
    >>> from green_callbacks.core.session import CallbackConfig, EnergySession
    >>> from green_callbacks.testing import FakeClock, FakeMeter
    >>> clock = FakeClock()
    >>> config = CallbackConfig(meters=[FakeMeter({"gpu:0": 100.0}, clock=clock)])
    >>> session = EnergySession(config, clock=clock, sample_interval_s=None).start()
    >>> clock.advance(1.0); session.tracker.poll()        # a first sample: 100 W
    >>> schedule = SaveSchedule(CheckpointPlanConfig(every_kj=0.5), signals=())
    >>> schedule.start(session)
    >>> clock.advance(6.0)                                  # 600 J since the start
    >>> decision = schedule.check(epoch_end=False)
    >>> decision.reason
    <SaveReason.EVERY_KJ: 'every_kj'>
    >>> schedule.save(decision, write=lambda: clock.advance(0.5))  # the write took 50 J
    50.0
    >>> schedule.planner.saves, schedule.since_j()
    (1, 0.0)
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from green_callbacks.core import keys
from green_callbacks.core.session import EnergySession
from green_callbacks.core.signals import SignalLatch, signal_names
from green_callbacks.core.tracker import Window
from green_callbacks.errors import (
    CheckpointLoadError,
    OutputFailureWarning,
    PolicyConfigError,
    UnsafeTargetError,
    UsageError,
    output_failed,
    require_number,
    warn,
)
from green_callbacks.policies.checkpointing import (
    CheckpointPlanConfig,
    CheckpointPlanner,
    SaveDecision,
    SaveReason,
)

log = logging.getLogger("green_callbacks.checkpoint")


class SaveSchedule:
    """When to save, and the energy of each save, for one training run.

    Args:
        plan: the planner's settings (``every_kj``, ``max_overhead``, ``max_loss_kj``).
        keep_last: how many saves :meth:`keep_newest` keeps.
        signals: on any of these, the next :meth:`check` after a batch saves and
            :attr:`signalled` turns True (the adapter then stops training).
    """

    def __init__(
        self,
        plan: CheckpointPlanConfig,
        *,
        keep_last: int = 2,
        signals: Sequence[str | int] | str = ("SIGTERM", "SIGINT"),
    ):
        require_number("keep_last", keep_last, PolicyConfigError, integer=True)
        if keep_last < 1:
            raise PolicyConfigError(
                f"keep_last must be a whole number of saves >= 1, got {keep_last!r}"
            )
        self.planner = CheckpointPlanner(plan)
        self.keep_last = keep_last
        self.signals = signal_names(signals)
        self.last_decision: SaveDecision | None = None
        self.last_cost_j: float | None = None
        self.signalled = False
        self.failures = 0
        """Saves that could not be written (each warned about)."""
        self.saving = False
        """True while a save is being written (the state it writes counts that save)."""
        self._session: EnergySession | None = None
        self._latch: SignalLatch | None = None
        self._since: Window | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self, session: EnergySession) -> None:
        """A fit begins: latch the signals and count energy from now."""
        self.stop()  # a fit that raised never reached its end
        self._session = session
        self.signalled = False
        self._latch = SignalLatch(self.signals, active=lambda: session.running).install()
        self._since = session.tracker.open("phase", "since_checkpoint", exact=False)

    def stop(self) -> None:
        """The fit ended (however it ended): give the signal handlers back."""
        if self._latch is not None:
            self._latch.restore()
            self._latch = None

    @property
    def session(self) -> EnergySession:
        if self._session is None or not self._session.running:
            raise UsageError(
                "EnergyCheckpoint is used outside a metered fit; pass it to fit together "
                "with an EnergyCallback"
            )
        return self._session

    # -- decisions -------------------------------------------------------

    def check(
        self, *, epoch_end: bool, agree: Callable[[bool], bool] | None = None
    ) -> SaveDecision:
        """Whether to save now: after a batch (``epoch_end`` False) or at an epoch's end.

        Args:
            epoch_end: the end of an epoch (signals are looked at after batches).
            agree: in a multi-process job, a collective that is True on every
                process when any process's value is True, so all save together.
        """
        signal = "" if epoch_end or self._latch is None else self._latch.pop()
        if agree is not None and not epoch_end:
            signal = (signal or "signal") if agree(bool(signal)) else ""
        decision = self.planner.decide(self.since_j(), epoch_end=epoch_end, signal=signal)
        if decision.reason is SaveReason.SIGNAL:
            self.signalled = True
        return decision

    def since_j(self) -> float:
        """Training energy since the last save, over every process of the job. Units: J."""
        session = self.session
        if self._since is None:
            return 0.0
        since = session.tracker.peek(self._since)
        return session.reduced({"j": since})["j"] if session.distributed else since

    def save(self, decision: SaveDecision, write: Callable[[], object]) -> float | None:
        """Run ``write`` in a ``checkpoint`` window; returns and records its energy. Units: J.

        A write that fails with an ``OSError`` (a full disk, a path that is a
        file) or an unsafe target is warned about and not counted: the energy
        since the last save keeps growing, so the next trigger tries again.
        Returns None then. Training goes on; the atomic writer left the
        previous checkpoint whole.
        """
        session = self.session
        window = session.tracker.open("phase", "checkpoint")
        self.saving = True
        failed: Exception | None = None
        try:
            write()
        except (OSError, UnsafeTargetError) as err:
            failed = err
        finally:
            self.saving = False
            cost = session.tracker.close(window).energy_j
        if session.distributed is not None:
            cost = session.reduced({"j": cost})["j"]
        if failed is not None:
            self.failures += 1
            output_failed(
                f"EnergyCheckpoint could not save ({failed}); the previous checkpoint is intact, "
                "training goes on and the next trigger tries again",
                strict=session.config.strict, cause=failed,
            )  # fmt: skip
            return None
        self.planner.record(cost)
        session.note_checkpoint(energy_j=cost, since_s=window.start_s)
        self._since = session.tracker.open("phase", "since_checkpoint", exact=False)
        self.last_decision, self.last_cost_j = decision, cost
        log.info("EnergyCheckpoint saved (%s; %.3g J)", decision.message, cost)
        return cost

    def overhead(self) -> float:
        """Energy spent saving as a fraction of the job's total so far."""
        return self.planner.overhead(self.session.totals()[keys.TOTAL_J])

    # -- resume ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return self.planner.state_dict(saving=self.saving)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.planner.load_state_dict(state)


class ScheduledSaves:
    """What every framework's ``EnergyCheckpoint`` shows of its :class:`SaveSchedule`."""

    schedule: SaveSchedule

    @property
    def planner(self) -> CheckpointPlanner:
        """The schedule's planner: saves made and the energy they took."""
        return self.schedule.planner

    @property
    def last_decision(self) -> SaveDecision | None:
        """Why the latest save happened."""
        return self.schedule.last_decision


def newest_intact(candidates: Sequence[Path], problem: Callable[[Path], str | None]) -> Path | None:
    """The first of ``candidates`` (newest first) that ``problem`` finds nothing wrong with.

    Each one passed over is warned about, naming what was wrong, so a corrupt
    newest checkpoint costs the work since the one before it, not the run.

    Raises:
        CheckpointLoadError: there were candidates and none is intact.
    """
    found: list[str] = []
    for path in candidates:
        why = problem(path)
        if why is None:
            if found:
                warn(
                    f"resuming from {path}, the newest intact checkpoint; passed over: "
                    + "; ".join(found),
                    OutputFailureWarning,
                )
            return path
        found.append(f"{path} ({why})")
    if found:
        raise CheckpointLoadError(
            "no kept checkpoint can be resumed from: " + "; ".join(found) + ". Resume from "
            "another copy, or remove these files to start the run afresh"
        )
    return None


def numbered(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """The saves in ``folder``, newest first; files and folders alike.

    Args:
        folder: where the saves are.
        pattern: matches a save's name; its first group is a number that orders
            the saves (a step or a sequence number).
    """
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def keep_newest(folder: Path, pattern: re.Pattern[str], keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest saves in ``folder``; returns those kept, oldest first.

    Args:
        folder: where the saves are.
        pattern: matches a save's name; its first group is the number that orders them.
        keep: how many to keep.
    """
    saves = numbered(folder, pattern)
    for path in saves[keep:]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return saves[:keep][::-1]
