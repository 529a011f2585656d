"""The constructor and the run lifecycle every framework's ``EnergyCallback`` inherits.

:class:`EnergyCallbackArgs` takes the arguments (one signature for all
frameworks), opens an :class:`~green_callbacks.core.session.EnergySession`
per run and closes it however the run ends (its end hook, an exception a
watcher sees, the process's exit), and carries the run's state (energy
totals and the policies' parts) through checkpoints.
"""

from __future__ import annotations

import atexit
import contextvars
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from green_callbacks.core.run_folder import RunFolder
from green_callbacks.core.session import CallbackConfig, EnergySession
from green_callbacks.core.watch import WATCH_INTERVAL_S, CallWatch, Watcher
from green_callbacks.errors import (
    CallbackConfigError,
    InterruptedRunWarning,
    MeterReadError,
    warn,
)
from green_callbacks.meters.spec import MeterLike

RUN_STATE_VERSION = 1
"""Version of :meth:`EnergyCallbackArgs.run_state`; 0 was the energy state alone."""
INTERRUPTED = (
    "this run ended without its end hook (an exception?) and was closed when the next run "
    "started: its figures include the time until then; the next run starts from zero"
)
ENDED_BY_ERROR = (
    "this run's {call} ended without its end hook (an exception) and the run was closed "
    "within {interval:g} s of it; the next run starts from zero"
)
CONTINUED = (
    "the energy totals continue an earlier run's (this callback's previous fit, or a "
    "checkpoint's): energy_j includes that run's energy; this folder's history holds only "
    "this run's epochs"
)
SUMMARY_SINKS: contextvars.ContextVar[tuple[Callable[[dict[str, Any]], None], ...]] = (
    contextvars.ContextVar("green_callbacks_summary_sinks", default=())
)
"""Who else receives each run's summary when it ends in this context (a metered Optuna
trial collects its fits' totals: :func:`green_callbacks.optuna.collected_summaries`)."""
_SESSIONS = threading.RLock()
"""Held while a callback opens or closes its session (a :class:`Watcher` may close one)."""


class Stateful(Protocol):
    """Anything whose state is plain numbers and strings, saved and loaded as a dict."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class EnergyCallbackArgs:
    """The constructor every framework's ``EnergyCallback`` inherits: one signature for all.

    Args:
        meters: ``"auto"``, a spec string, a meter, or a list (docs/meters.md).
        granularity: ``"batch"`` (default) logs each logged step's energy
            (``energy/train_step_j``) as well as the epoch's; ``"epoch"`` only the epoch's.
        idle_baseline_s: seconds of idle power measured first. Units: s.
        carbon_intensity_g_per_kwh: grid intensity for ``carbon/total_g``, or None.
            Units: gCO2e/kWh.
        pue: facility power usage effectiveness applied to carbon.
        trace_path: JSONL file receiving every window, or None.
        summary_path: JSON file written at the end of the run, or None.
        sync_cuda: synchronise CUDA before each batch reading (epoch and run
            boundaries are always synchronised).
        progress_bar: show the run's energy so far (``energy_j``, J) and the
            epoch's average power (``power_w``, W) on the framework's progress
            bar while training (Lightning: at each logged step, when the
            ``Trainer`` has a bar; Keras: every batch). Not sent to loggers.
        strict: fail instead of surviving: a sensor that fails or reads an
            impossible value, a logger, summary, trace or checkpoint that cannot
            be written raise (once failed, every later reading raises too).
            Default: warn, label the figures and let training go on
            (docs/reliability.md).
        run_dir: a folder for everything a report or the advisor needs later.
            Each training run gets its own ``run_dir/version_N``
            (:attr:`run_folder`; an evaluation after it, ``fit`` then ``test``,
            and an ``OOMGuard`` retry keep its folder) holding ``summary.json`` and ``trace.jsonl``
            (where ``summary_path`` and ``trace_path`` do not say otherwise)
            and ``history.jsonl``, one line per training epoch with the energy
            figures, your own metrics, the share of step time spent waiting for
            data and memory in use (docs/report.md). None: no folder.
        advise: at the end of the run, print the energy-pattern advice for it and
            write it into the run's folder (``advice.md``, ``advice.json``; docs/advisor.md).

    Arguments are checked when the callback is built (:class:`CallbackConfig`).
    Adapters add their own state in :meth:`_init_state`; the session itself is
    created when a run starts, not here, so callbacks pickle for spawn-based DDP.
    """

    def __init__(
        self,
        meters: MeterLike | Sequence[MeterLike] = "auto",
        granularity: str = "batch",
        idle_baseline_s: float = 0.0,
        carbon_intensity_g_per_kwh: float | None = None,
        pue: float = 1.0,
        trace_path: str | Path | None = None,
        summary_path: str | Path | None = None,
        sync_cuda: bool = False,
        progress_bar: bool = True,
        strict: bool = False,
        run_dir: str | Path | None = None,
        advise: bool = False,
    ):
        super().__init__()
        self.config = CallbackConfig(
            meters, granularity, idle_baseline_s, carbon_intensity_g_per_kwh, pue,
            trace_path, summary_path, sync_cuda, progress_bar, strict, run_dir, advise,
        )  # fmt: skip
        self._session: EnergySession | None = None
        self._session_options: dict[str, Any] = {}  # tests: a fake clock (testing.fake_metered)
        self._pending_state: dict[str, Any] = {}
        self._run_folder: RunFolder | None = None  # the last run's, kept by a run continuing it
        self._retrying = False  # the next training run retries this one (OOMGuard): same folder
        self._parts: dict[str, Stateful] = {}
        self._pending_parts: dict[str, dict[str, Any]] = {}
        self._watcher: Watcher | None = None
        self._stale_state = False  # the pending state is a failed run's: not continued
        self._oom_events: list[dict[str, Any]] = []  # carried into the next run's facts
        self.summary: dict[str, Any] | None = None
        """The end-of-run summary (docs/tracker.md), once a run has stopped."""
        self._init_state()

    def _init_state(self) -> None:
        """Per-framework attributes, set at the end of ``__init__``."""

    @property
    def session(self) -> EnergySession | None:
        """The running session (None outside a metered run)."""
        return self._session

    @property
    def run_folder(self) -> Path | None:
        """The current (or last) run's folder, ``run_dir/version_N``; None without ``run_dir``."""
        session = self._session
        folder = session.folder if session is not None else self._run_folder
        return None if folder is None else folder.root

    def _open_session(
        self, watch: CallWatch | None = None, *, training: bool = False, **options: Any
    ) -> EnergySession:
        """Start a session (``options`` as :class:`EnergySession`), continuing any loaded state.

        ``training``: the run is a training call (``fit``, ``train``). It gets a
        new run folder even when it continues this callback's totals (its
        epochs start again), unless it retries the last run (``OOMGuard``); an
        evaluation or prediction after a run keeps that run's folder.

        A session still open here belongs to a run that never reached its end
        hook (Keras and Hugging Face call none after an exception): it is
        closed first, its summary written with a note, so the new run neither
        inherits its clock nor leaks its sampler thread. ``watch``: the
        framework call the run belongs to (``fit``, ``train``); once it has
        ended without the end hook, the run is closed at once, the same way,
        rather than at the next run. A session still open when the process
        exits is closed then.
        """
        with _SESSIONS:
            self._close_stale()
            if self._stale_state:
                self._pending_state, self._stale_state = {}, False
            keep = self._pending_state and (self._retrying or not training)
            folder, self._retrying = (self._run_folder if keep else None), False
            session = EnergySession(
                self.config, folder=folder, **options, **self._session_options
            ).start()
            if self._oom_events:
                session.facts["oom_events"] = list(self._oom_events)
            self._session = session
            if self._pending_state and folder is None and session.folder is not None:
                session.notes.append(CONTINUED)
            session.load_state_dict(self._pending_state)
            self._pending_state = {}
            atexit.register(self._close_at_exit)
            if watch is not None:
                self._watcher = Watcher(watch, lambda: self._close_ended(session), _SESSIONS)
                self._watcher.start()
        return session

    def _close_ended(self, session: EnergySession) -> None:
        """The watched call ended and this ``session`` is still open: close it with a note."""
        if self._session is not session:
            return
        note = ENDED_BY_ERROR.format(call=self.WATCHED_CALL, interval=WATCH_INTERVAL_S)
        warn(note, InterruptedRunWarning)
        self._close_session(note=note)
        self._stale_state = True

    WATCHED_CALL = "fit()"
    """What adapters call the framework call they watch, for the note."""

    def _close_stale(self) -> None:
        """Close a session a run left open without reaching its end hook, with a warning.

        Its summary is written with a note: when the run failed is unknown, so
        its figures run until now. The next run does not continue its totals.
        """
        if self._session is not None:
            warn(INTERRUPTED, InterruptedRunWarning)
            self.end_interrupted(INTERRUPTED, continue_totals=False)

    def end_interrupted(self, note: str, *, continue_totals: bool) -> None:
        """End a run that an exception interrupted: summary written with ``note``.

        ``continue_totals``: the next run continues this one's totals (a
        deliberate retry, as ``OOMGuard`` makes); else it starts from zero.
        Also right after the watcher closed the run (it keeps the totals
        for this call to decide).
        """
        with _SESSIONS:
            if self._session is None and self.summary is not None and self._stale_state:
                self.summary["notes"].append(note)
            self._close_session(note=note)
            self._stale_state = not continue_totals
            self._retrying = continue_totals

    def _close_session(self, note: str | None = None) -> None:
        """Stop the session, keeping its final state and summary (with ``note``, if any)."""
        with _SESSIONS:
            if self._watcher is not None:
                self._watcher.stop()
                self._watcher = None
            session = self._session
            if session is not None:
                atexit.unregister(self._close_at_exit)
                self._pending_state = session.state_dict()
                self._run_folder = session.folder
                self._stale_state = False
                try:
                    self.summary = session.stop(note)
                except MeterReadError:  # strict mode: the summary was written; keep it here too
                    self.summary = session.final_summary
                    raise
                finally:  # only now: a thread waiting for the run's end finds its summary
                    self._session = None
                for sink in SUMMARY_SINKS.get():
                    sink(self.summary)
                if (
                    self.config.advise
                    and session.folder is not None
                    and not (session.distributed is not None and session.distributed.share.rank)
                ):
                    # The one import upwards, asked for by advise=True: the tool reads the
                    # run folder this run has just finished writing.
                    from green_callbacks.analysis.cli import advise_run_folder

                    advise_run_folder(session.folder.root)

    def record_oom_events(self, events: Sequence[Any]) -> None:
        """The out-of-memory errors an ``OOMGuard`` handled, for the run folder's facts (P7).

        Args:
            events: the guard's :class:`~green_callbacks.policies.memory.OOMEvent` records.
        """
        self._oom_events = [asdict(e) for e in events]
        if self._session is not None:
            self._session.facts["oom_events"] = list(self._oom_events)

    def _close_at_exit(self) -> None:
        self._close_session(note="the process exited before this run's end hook ran")

    # -- the run state: energy and the policies acting on it, saved together --

    def register_state(self, name: str, part: Stateful) -> None:
        """Let ``part`` (a policy's driver) travel in :meth:`run_state` under ``name``.

        State loaded before ``part`` registers is handed to it now.
        """
        self._parts[name] = part
        pending = self._pending_parts.pop(name, None)
        if pending is not None:
            part.load_state_dict(pending)

    def run_state(self) -> dict[str, Any]:
        """One versioned state of the run: the energy totals and every registered policy's."""
        parts = {name: part.state_dict() for name, part in self._parts.items()}
        return {"version": RUN_STATE_VERSION, "energy": self.state_dict(), "parts": parts}

    def load_run_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`run_state` (or the energy state alone, as version 0 wrote)."""
        if "version" not in state:  # version 0: the energy state itself
            state = {"version": 0, "energy": state, "parts": {}}
        if int(state["version"]) > RUN_STATE_VERSION:
            raise CallbackConfigError(
                f"this run state has version {state['version']}, newer than this "
                f"green_callbacks reads ({RUN_STATE_VERSION}); upgrade green_callbacks to resume it"
            )
        self.load_state_dict(dict(state.get("energy", {})))
        for name, part_state in dict(state.get("parts", {})).items():
            if name in self._parts:
                self._parts[name].load_state_dict(part_state)
            else:
                self._pending_parts[name] = part_state

    def state_dict(self) -> dict[str, Any]:
        """The energy totals to continue from on resume: plain numbers and strings."""
        if self._session is not None and self._session.running:
            return self._session.state_dict()
        return dict(self._pending_state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the totals of :meth:`state_dict` (now, or when the next run starts)."""
        if self._session is not None and self._session.running:
            self._session.load_state_dict(state_dict)
        else:  # a checkpoint's totals: the run that continues them gets a new folder
            self._pending_state, self._run_folder = dict(state_dict), None
