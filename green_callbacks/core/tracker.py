"""EnergyTracker: attribute the energy of a run to windows of work.

Framework-free; the Lightning, Keras and Hugging Face callbacks feed it.

Example:
    >>> from green_callbacks.core import EnergyTracker
    >>> from green_callbacks.meters import ReplayMeter
    >>> from green_callbacks.testing import FakeClock
    >>> clock = FakeClock()
    >>> meter = ReplayMeter.from_power([0.0, 10.0], [100.0, 100.0], clock=clock)
    >>> tracker = EnergyTracker([meter], sample_interval_s=None, clock=clock).start()
    >>> clock.advance(1.0)
    >>> epoch = tracker.open("epoch", "train")
    >>> clock.advance(2.0)
    >>> result = tracker.close(epoch)
    >>> result.energy_j, result.duration_s, result.kind
    (200.0, 2.0, 'replayed')
    >>> tracker.stop().energy_j
    300.0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from operator import sub
from pathlib import Path
from types import TracebackType
from typing import Any

from green_callbacks.core.records import LEVELS, Layout, WindowResult, WindowStats
from green_callbacks.core.sampler import (
    Model,
    Sampler,
    SourceState,
    interpolated_deltas,
)
from green_callbacks.core.trace import TraceWriter
from green_callbacks.core.units import Carbon
from green_callbacks.errors import TrackerConfigError, TrackerStateError
from green_callbacks.meters.auto import Finding
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Domain, Meter
from green_callbacks.meters.share import RankShare, restrict
from green_callbacks.meters.spec import MeterLike, open_meters

STATE_FORMAT = "green_callbacks.tracker/1"
_LEVEL_SET = frozenset(LEVELS)
DEFAULT_SAMPLE_INTERVAL_S = 0.1
UNPRIMED_READ_S = 0.01
"""Before the sampler's models have a power, batch boundaries read the sensors at most this
often (the CPU estimate's counters tick every 10 ms); the ones between use the run's mean power
at the latest reading. Units: s."""


class Window:
    """An open window; pass it back to :meth:`EnergyTracker.close`.

    It starts either from a fresh reading (``start_values``) or, for an
    interpolated boundary, from the sampler's model in force (``start_model``).

    Args:
        level: ``run``, ``phase``, ``epoch`` or ``batch``.
        name: its label (``"train"``).
        start_s: the tracker clock when it opened. Units: s.
        start_values: cumulative energy per domain then, or None. Units: J.
        start_model: the sampler's model then, for an interpolated start.
    """

    __slots__ = ("closed", "level", "name", "start_model", "start_s", "start_values")

    def __init__(
        self,
        level: str,
        name: str,
        start_s: float,
        start_values: tuple[float, ...] | None,
        start_model: Model | None = None,
    ):
        self.level = level
        self.name = name
        self.start_s = start_s
        self.start_values = start_values
        self.start_model = start_model
        self.closed = False

    def values_at_start(self) -> tuple[float, ...]:
        if self.start_values is not None:
            return self.start_values
        assert self.start_model is not None
        return self.start_model.at(self.start_s)


class EnergyTracker:
    """Meters a run and the windows inside it (phases, epochs, batches).

    Args:
        meters: ``"auto"``, a spec string, a meter object, or a list of them
            (see :mod:`green_callbacks.meters.spec`).
        sample_interval_s: how often the sampler thread reads every source, or
            None for no thread (call :meth:`poll` yourself). Units: s.
        idle_baseline_s: seconds of idle power to measure at start; windows then
            also report energy above idle. 0 disables. Units: s.
        carbon_intensity_g_per_kwh: grid intensity for gCO2e figures, or None.
        pue: facility power usage effectiveness applied to carbon figures.
        trace_path: JSONL file to append every closed window to, or None.
            Without it memory stays bounded by running aggregates.
        strict: raise when a source fails instead of dropping it with a warning.
        share: this process's place in a distributed job; only its share of
            the domains is metered (:mod:`green_callbacks.meters.share`).
        share_sum: the job's element-wise sum over processes; with it, the
            processes compare their shares at start, so that no domain is
            metered by two of them.
        clock: monotonic clock (tests inject a fake one).
        sleep: how to wait during the idle baseline (tests inject a fake one).

    Windows may nest or overlap freely (validation runs inside a training epoch
    in Lightning); each reports the energy of all metered domains during its
    own interval. Batch windows interpolate between sensor samples by default;
    other levels take a fresh reading at both ends.
    """

    def __init__(
        self,
        meters: MeterLike | Sequence[MeterLike] = "auto",
        *,
        sample_interval_s: float | None = DEFAULT_SAMPLE_INTERVAL_S,
        idle_baseline_s: float = 0.0,
        carbon_intensity_g_per_kwh: float | None = None,
        pue: float = 1.0,
        trace_path: str | Path | None = None,
        strict: bool = False,
        share: RankShare | None = None,
        share_sum: Callable[[list[float]], list[float]] | None = None,
        clock: Clock = DEFAULT_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if sample_interval_s is not None and sample_interval_s <= 0:
            raise TrackerConfigError(
                f"sample_interval_s must be > 0 s or None (no thread), got {sample_interval_s}"
            )
        if idle_baseline_s < 0:
            raise TrackerConfigError(f"idle_baseline_s must be >= 0 s, got {idle_baseline_s}")
        self._meter_specs = meters
        self._sample_interval_s = sample_interval_s
        self._idle_baseline_s = idle_baseline_s
        self._carbon = (
            None if carbon_intensity_g_per_kwh is None else Carbon(carbon_intensity_g_per_kwh, pue)
        )
        self._trace_path = trace_path
        self._strict = strict
        self._share = share
        self._share_sum = share_sum
        self._clock = clock
        self._sleep = sleep
        self._reset()

    def _reset(self) -> None:
        self._sources: list[SourceState] = []
        self._model = Model((), (), ())
        self._all_top = True
        self._dropped: list[str] = []
        self._notes: tuple[str, ...] = ()
        self._findings: list[Finding] = []
        self._layout = Layout.of((), self._carbon)
        self._sampler: Sampler | None = None
        self._primed = True  # every source's model has a power (see _begin_run)
        self._latest: tuple[float, tuple[float, ...]] = (0.0, ())  # the last fresh reading
        self._trace: TraceWriter | None = None
        self._run: Window | None = None
        self._idle_w: tuple[float, ...] | None = None
        self._idle_total_w = 0.0
        self._stats: dict[tuple[str, str], WindowStats] = {}
        self._prior_j: dict[str, float] = {}
        self._prior_domains: dict[str, Domain] = {}
        self._prior_duration_s = 0.0
        self._prior_idle_j: float | None = None
        self._final: WindowResult | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> EnergyTracker:
        """Open the meters, start the sampler, measure idle power if asked, open the run."""
        if self._run is not None:
            raise TrackerStateError("tracker already started; call stop() before starting again")
        selection = open_meters(self._meter_specs, clock=self._clock)
        if self._share is not None and self._share.world_size > 1:
            try:  # the processes compare their shares here: a collective that can fail
                selection = restrict(selection, self._share, self._share_sum)
            except BaseException:
                for meter in selection.meters:
                    meter.close()
                raise
        self._findings = selection.findings
        self._sources = [
            SourceState(
                m, strict=self._strict, on_drop=self._note_drop, on_note=self._note,
                clock=self._clock,
            )
            for m in selection.meters
        ]  # fmt: skip
        self._layout = Layout.of(
            tuple(chain.from_iterable(m.domains() for m in selection.meters)), self._carbon
        )
        self._all_top = all(self._layout.top)
        try:
            self._begin_run(self._poll_interval(selection.meters))
        except BaseException:
            self._shutdown()  # no thread, meter or file outlives a failed start
            raise
        return self

    def _begin_run(self, interval: float | None) -> None:
        if interval is not None:
            self._sampler = Sampler(self.poll, interval)
            self._sampler.start()
        if self._trace_path is not None:
            self._trace = TraceWriter(Path(self._trace_path), strict=self._strict)
        t0, v0 = self._exact()
        if self._idle_baseline_s > 0:
            self._measure_idle(t0, v0)
            t0, v0 = self._exact()
        self._run = Window("run", "run", t0, v0)
        # No wait for a first power: until the sampler has given every source's model one
        # (two readings MIN_SLOPE_SPAN_S apart), a batch boundary reads the sensors and a
        # batch gets the run's mean power so far (_unprimed_deltas), never 0 J. Without a
        # sampler the caller polls (tests on a fake clock): the model is as they make it.
        self._primed = self._sampler is None or all(s.primed for s in self._sources)

    def _poll_interval(self, meters: Sequence[Meter]) -> float | None:
        if self._sample_interval_s is None:
            return None
        limits = [m.max_poll_interval_s for m in meters if m.max_poll_interval_s is not None]
        return min([self._sample_interval_s, *limits])

    def _measure_idle(self, t0: float, v0: tuple[float, ...]) -> None:
        self._sleep(self._idle_baseline_s)
        t1, v1 = self._exact()
        elapsed = t1 - t0
        if elapsed <= 0:
            raise TrackerStateError(
                f"idle baseline took {elapsed} s on the tracker clock; it must advance"
            )
        self._idle_w = tuple((b - a) / elapsed for a, b in zip(v0, v1))
        self._idle_total_w = sum(w for w, top in zip(self._idle_w, self._layout.top) if top)

    def stop(self) -> WindowResult:
        """Close the run: final exact reading, stop the sampler, close meters and trace.

        Returns:
            The run totals (continuing any state loaded with :meth:`load_state_dict`).
        """
        run = self._require_run()
        try:
            now, values = self._exact(check=False)  # the totals are kept even in strict mode
            self._record(run, now, tuple(map(sub, values, run.values_at_start())), False)
            self._final = self._totals_at(now, values)
        finally:
            self._shutdown()
        if self._strict:
            self._raise_if_strict()
        return self._final

    def _shutdown(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        for source in self._sources:
            source.meter.close()
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        self._run = None

    def __enter__(self) -> EnergyTracker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._run is not None:
            self.stop()

    @property
    def running(self) -> bool:
        return self._run is not None

    def clock(self) -> float:
        """The tracker's clock now (the one its windows are timed on). Units: s."""
        return self._clock()

    # -- readings --------------------------------------------------------

    def poll(self) -> None:
        """Read every source now; what the sampler thread calls each interval."""
        for source in self._sources:
            source.sample()
        self._model = Model.concat([s.model for s in self._sources])

    def _note(self, note: str) -> None:
        self._dropped.append(note)
        self._notes = tuple(self._dropped)

    def _note_drop(self, note: str) -> None:
        """A source was dropped: its domains are now estimates, and the layout says so."""
        self._note(note)
        domains = tuple(chain.from_iterable(s.domains for s in self._sources))
        self._layout = Layout.of(domains, self._carbon)

    def _exact(self, *, check: bool = True) -> tuple[float, tuple[float, ...]]:
        """A fresh reading of every source (which also updates the models)."""
        parts = [s.sample() for s in self._sources]
        self._model = Model.concat([s.model for s in self._sources])
        if self._strict and check:  # a failure of this reading, or one on the sampler thread
            self._raise_if_strict()
        if len(parts) == 1:  # a single source's own reading time is the boundary's
            self._latest = parts[0]
        else:
            self._latest = self._clock(), tuple(chain.from_iterable(v for _, v in parts))
        return self._latest

    def _raise_if_strict(self) -> None:
        for source in self._sources:
            source.raise_if_strict()

    # -- windows ---------------------------------------------------------

    def open(self, level: str, name: str = "", *, exact: bool | None = None) -> Window:
        """Open a window.

        Args:
            level: ``run``, ``phase``, ``epoch`` or ``batch``.
            name: free label, e.g. ``"train"``; aggregates are kept per level and name.
            exact: read the sensors now (True) or interpolate between samples
                (False). Default: interpolate for batches only.
        """
        if self._run is None:
            self._require_run()
        if level not in _LEVEL_SET:
            raise TrackerConfigError(f"window level must be one of {LEVELS}, got {level!r}")
        if level != "batch" if exact is None else exact:
            now, values = self._exact()
            return Window(level, name, now, values)
        if self._strict:
            self._raise_if_strict()
        if not self._primed and self._unprimed():  # no power yet: start at a reading
            now, _ = self._exact()
            return Window(level, name, now, None, self._model)
        return Window(level, name, self._clock(), None, self._model)  # the per-batch path

    def close(self, window: Window, *, exact: bool | None = None) -> WindowResult:
        """Close a window and return its energy; updates the running aggregates."""
        if self._run is None:
            self._require_run()
        if window.closed:
            raise TrackerStateError(f"window {window.level}/{window.name} was already closed")
        if window.level != "batch" if exact is None else exact:
            now, values = self._exact()
            deltas = tuple(map(sub, values, window.values_at_start()))
            if window.start_model is not None:  # interpolated start: never negative
                deltas = tuple(d if d > 0.0 else 0.0 for d in deltas)
            return self._record(window, now, deltas, window.start_model is not None)
        if self._strict:
            self._raise_if_strict()
        if not self._primed and self._unprimed():
            now, deltas, _ = self._unprimed_deltas(window)
            return self._record(window, now, deltas, True)
        now = self._clock()
        model = self._model
        if window.start_model is not None:  # the per-batch path
            deltas = interpolated_deltas((window.start_s, window.start_model), (now, model))
        else:
            ends = self._model.at(now)
            deltas = tuple(d if d > 0.0 else 0.0 for d in map(sub, ends, window.values_at_start()))
        return self._record(window, now, deltas, True)

    def lap(self, window: Window) -> WindowResult:
        """Close ``window`` and reopen it at the same instant: one call per batch.

        Consecutive batches are contiguous, so the end of one is the start of
        the next (the time between them, loading the next batch, belongs to
        it). Half the work of ``close`` + ``open``; the window must have been
        opened interpolated (the default for batches).

        Example:
            >>> from green_callbacks.testing import FakeClock, FakeMeter
            >>> clock = FakeClock()
            >>> meter = FakeMeter({"gpu:0": 100.0}, clock=clock)
            >>> tracker = EnergyTracker([meter], sample_interval_s=None, clock=clock).start()
            >>> clock.advance(1.0); tracker.poll()  # the sampler's second sample: 100 W
            >>> batch = tracker.open("batch", "train")
            >>> clock.advance(0.25)
            >>> tracker.lap(batch).energy_j
            25.0
            >>> clock.advance(0.5)
            >>> tracker.lap(batch).energy_j
            50.0
        """
        if window.start_model is None or window.closed:
            raise TrackerStateError(
                f"lap() needs an open interpolated window, got {window.level}/{window.name} "
                f"({'closed' if window.closed else 'opened with exact=True'}); "
                "open it with tracker.open('batch', name)"
            )
        if self._strict:
            self._raise_if_strict()
        if not self._primed and self._unprimed():
            now, deltas, reopened = self._unprimed_deltas(window)
            result = self._record(window, now, deltas, True)
            window.start_s, window.start_model, window.closed = now, reopened, False
            return result
        now = self._clock()
        model = self._model
        deltas = interpolated_deltas((window.start_s, window.start_model), (now, model))
        result = self._record(window, now, deltas, True)
        window.start_s, window.start_model, window.closed = now, model, False
        return result

    def lap_j(self, window: Window) -> float:
        """``lap(window).energy_j`` without building the result: what a step's figure needs.

        The per-step path. Under the model ``window`` started on (no sample arrived
        since: the common case), with every domain top-level, no trace to write and
        no strict check, the energy is the model's power times the time elapsed;
        otherwise it is :meth:`lap`'s. Either way the batch statistics count it.
        """
        model = self._model
        if window.start_model is not model or self._trace is not None or self._strict:
            return self.lap(window).energy_j
        if not self._primed or window.closed:
            return self.lap(window).energy_j
        now = self._clock()
        duration = now - window.start_s
        energy = duration * self._top_total(model.slopes)  # the top-level domains' power
        self._tally(window, energy, duration)
        window.start_s = now
        return energy

    def _unprimed(self) -> bool:
        """Whether a source's model has no power yet (checked until every one has)."""
        if not self._primed:
            self._primed = all(s.primed for s in self._sources)
        return not self._primed

    def _unprimed_deltas(self, window: Window) -> tuple[float, tuple[float, ...], Model]:
        """A batch before the model has a power: the run's mean power so far times the
        batch's duration (what the model's first power will be, known now); with the end,
        the deltas and the model to reopen the window on.

        Only the first batches of a run (under one sampler interval) take this path;
        it ends once every model has a power. The model is :meth:`_run_mean_model`'s,
        which reads the sensors at most every :data:`UNPRIMED_READ_S`: a window
        reopened on it and closed under a power counts from its start, none of the
        batch before it twice. A batch opened meanwhile starts at a reading, for the
        same reason.
        """
        now, model = self._run_mean_model(read=True)
        duration = now - window.start_s
        return now, tuple(p * duration for p in model.slopes), model

    def _run_mean_model(self, *, read: bool) -> tuple[float, Model]:
        """Now, and the cumulative energy per domain as the latest reading run on at the
        run's mean power up to it: the model before the sampler's gives a power.

        ``read``: take a fresh reading if the latest is :data:`UNPRIMED_READ_S` old or
        the run's own first (a batch boundary); else never (a peek).
        """
        run = self._require_run()
        now = self._clock()
        at, values = self._latest
        if read and (now - at >= UNPRIMED_READ_S or at <= run.start_s):
            at, values = self._exact()
            now = at
        span = at - run.start_s
        start = run.values_at_start()
        power = tuple(max(b - a, 0.0) / span if span > 0 else 0.0 for a, b in zip(start, values))
        return now, Model((at,) * len(values), values, power)

    def peek(self, window: Window) -> float:
        """Energy since ``window`` opened, interpolated: no sensor read, nothing recorded. Units: J.

        For checks made at every batch (has a checkpoint interval been spent?)
        and figures shown while training.

        Example:
            >>> from green_callbacks.testing import FakeClock, FakeMeter
            >>> clock = FakeClock()
            >>> meter = FakeMeter({"gpu:0": 100.0}, clock=clock)
            >>> tracker = EnergyTracker([meter], sample_interval_s=None, clock=clock).start()
            >>> clock.advance(1.0); tracker.poll()
            >>> since = tracker.open("phase", "since_save", exact=False)
            >>> clock.advance(2.0)
            >>> tracker.peek(since), tracker.peek(since)
            (200.0, 200.0)
        """
        if window.closed:
            raise TrackerStateError(f"peek() needs an open window, {window.level} is closed")
        if not self._primed and self._unprimed():  # no power yet: the run's mean so far
            now, model = self._run_mean_model(read=False)
        else:
            now, model = self._clock(), self._model
        if window.start_model is not None:
            deltas = interpolated_deltas((window.start_s, window.start_model), (now, model))
        else:  # an exact start (an epoch, the run): its reading against the model now
            ends = map(sub, model.at(now), window.values_at_start())
            deltas = tuple(d if d > 0.0 else 0.0 for d in ends)
        return self._top_total(deltas)

    def utilization_totals(self) -> dict[str, tuple[float, int]]:
        """Per domain, the utilisation rates its source has read so far: (sum, count).

        Only sources that report utilisation (NVML) appear; the mean between two
        calls is that domain's utilisation over the span.
        """
        totals: dict[str, tuple[float, int]] = {}
        for source in self._sources:
            report = getattr(source.meter, "utilization_totals", None)
            if callable(report):
                totals.update(report())
        return totals

    def peek_run(self) -> float:
        """Energy of the run so far (with any loaded prior state), interpolated. Units: J.

        For figures shown while training (a progress bar): no sensor read.
        """
        prior = self._prior_domains
        earlier = sum(
            j for name, j in self._prior_j.items() if name not in prior or not prior[name].part_of
        )
        return self.peek(self._require_run()) + earlier

    def _record(
        self, window: Window, now: float, deltas: tuple[float, ...], interpolated: bool
    ) -> WindowResult:
        window.closed = True
        duration = now - window.start_s
        idle_j = None if self._idle_w is None else self._idle_total_w * duration
        layout = self._layout
        result = WindowResult(
            window.level,
            window.name,
            window.start_s,
            duration,
            deltas,
            layout,
            idle_j,
            interpolated,
            self._notes,
        )
        self._tally(window, self._top_total(deltas), duration)
        if self._trace is not None:
            self._trace.write(result)
        return result

    def _top_total(self, values: tuple[float, ...]) -> float:
        """The sum over top-level domains of per-domain ``values`` (J, or W): a domain
        nested in another (RAPL's core in its package) is not added twice."""
        return sum(values) if self._all_top else sum(self._layout.total_of(values))

    def _tally(self, window: Window, energy_j: float, duration_s: float) -> None:
        """Count a closed window in the statistics of its level and name."""
        key = (window.level, window.name)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = WindowStats()
        stats.add(energy_j, duration_s)

    @contextmanager
    def window(self, level: str, name: str = "") -> Iterator[list[WindowResult]]:
        """Context manager form of open/close; yields a list that receives the result."""
        handle = self.open(level, name)
        box: list[WindowResult] = []
        try:
            yield box
        finally:
            box.append(self.close(handle))

    def _require_run(self) -> Window:
        if self._run is None:
            raise TrackerStateError(
                "tracker is not running; call start() first (or use it as a context manager)"
            )
        return self._run

    # -- reports ---------------------------------------------------------

    def totals(self) -> WindowResult:
        """The run so far, from a fresh reading, plus any loaded prior state."""
        self._require_run()
        return self._totals_at(*self._exact())

    def _totals_at(self, now: float, values: tuple[float, ...]) -> WindowResult:
        run = self._require_run()
        duration = now - run.start_s
        current = dict(zip(self._layout.names, map(sub, values, run.values_at_start())))
        extra = tuple(d for n, d in self._prior_domains.items() if n not in current)
        layout = Layout.of(self._layout.domains + extra, self._carbon) if extra else self._layout
        merged = tuple(current.get(n, 0.0) + self._prior_j.get(n, 0.0) for n in layout.names)
        idle_j = None
        if self._idle_w is not None or self._prior_idle_j is not None:
            idle_j = self._idle_total_w * duration + (self._prior_idle_j or 0.0)
        return WindowResult(
            level="run",
            name="total",
            start_s=run.start_s,
            duration_s=duration + self._prior_duration_s,
            values=merged,
            layout=layout,
            idle_j=idle_j,
            notes=self.notes,
        )

    @property
    def notes(self) -> tuple[str, ...]:
        """What the figures lack: sources dropped during the run."""
        return self._notes

    @property
    def domains(self) -> tuple[Domain, ...]:
        """Provenance of every metered domain."""
        return self._layout.domains

    @property
    def kind(self) -> str:
        """``measured``, ``estimated`` or ``replayed`` if all domains agree, else ``mixed``."""
        return self._layout.kind()

    @property
    def source(self) -> str:
        """Every metered domain with its provenance, as ``domain=label`` pairs (a record's
        ``energy_source``); read it while the tracker runs."""
        return ", ".join(f"{d.name}={d.label()}" for d in self.domains)

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Why ``auto`` chose what it chose (empty for explicit meters)."""
        return tuple(self._findings)

    @property
    def idle_power_w(self) -> dict[str, float] | None:
        """Idle power per domain from the baseline, or None. Units: W."""
        return None if self._idle_w is None else dict(zip(self._layout.names, self._idle_w))

    def stats(self, level: str, name: str = "") -> WindowStats:
        """Running aggregate of closed windows with this level and name."""
        return self._stats.get((level, name), WindowStats())

    @property
    def window_stats(self) -> dict[str, WindowStats]:
        """All running aggregates, keyed ``"level/name"``."""
        return {f"{level}/{name}": s for (level, name), s in self._stats.items()}

    def summary(self) -> dict[str, Any]:
        """JSON-ready report of the run: totals, aggregates, provenance, findings."""
        totals = self.totals() if self._run is not None else self._final
        return {
            "totals": None if totals is None else totals.to_dict(),
            "windows": {k: s.to_dict() for k, s in self.window_stats.items()},
            "idle_power_w": self.idle_power_w,
            "findings": [f.__dict__ for f in self._findings],
            "notes": list(self.notes),
            "resumed": bool(self._prior_j),
        }

    # -- resume ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers and strings that let a resumed run continue its totals.

        Available in strict mode after a failure too: the record is kept.
        """
        self._require_run()
        totals = self._totals_at(*self._exact(check=False))
        return {
            "format": STATE_FORMAT,
            "energy_j": totals.energy_by_domain,
            "duration_s": totals.duration_s,
            "idle_j": totals.idle_j,
            "domains": [d.to_dict() for d in totals.layout.domains],
            "windows": {f"{lv}\t{nm}": s.to_dict() for (lv, nm), s in self._stats.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` of an earlier run (before or after start).

        Raises:
            TrackerStateError: ``state`` is not a tracker state of this format.
        """
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise TrackerStateError(
                f"not a green_callbacks tracker state (format {found!r}, "
                f"expected {STATE_FORMAT!r}); "
                "pass what EnergyTracker.state_dict() returned"
            )
        try:
            prior_j = {str(k): float(v) for k, v in state["energy_j"].items()}
            domains = {str(d["domain"]): _domain_from_dict(d) for d in state["domains"]}
            duration = float(state["duration_s"])
            idle = None if state["idle_j"] is None else float(state["idle_j"])
            stats = {_stats_key(k): WindowStats.from_dict(v) for k, v in state["windows"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TrackerStateError(f"tracker state is incomplete or malformed: {err!r}") from err
        self._prior_j, self._prior_domains = prior_j, domains
        self._prior_duration_s, self._prior_idle_j = duration, idle
        self._stats = stats


def _stats_key(key: str) -> tuple[str, str]:
    level, _, name = key.partition("\t")
    return level, name


def _domain_from_dict(data: Mapping[str, Any]) -> Domain:
    return Domain(
        name=str(data["domain"]),
        kind=data["kind"],
        source=str(data["source"]),
        method=str(data["method"]),
        part_of=data.get("part_of"),
        detail=str(data.get("detail", "")),
    )
