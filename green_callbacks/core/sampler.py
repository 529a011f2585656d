"""Sensor reads off the training thread: per-source linear models and the sampler thread.

Reading a sensor costs tens to hundreds of microseconds; a training step may
last one millisecond. So a background thread reads every source at a fixed
interval and keeps, per source, a linear model of its cumulative energy: the
latest sample and the power of the interval before it. A batch boundary only
reads the clock and keeps a reference to the current model (the figure is then
flagged ``interpolated``). Epoch and run boundaries take a fresh read.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import replace
from operator import add, mul, sub
from typing import NamedTuple

from green_callbacks.errors import (
    ImplausibleReadingError,
    MeterReadError,
    TrackerConfigError,
    warn,
)
from green_callbacks.meters.base import HELD_POWER, Meter

# Power is estimated over at least this span: counters update every 1 ms (RAPL)
# to 100 ms (NVML), so a read just after a sample would mostly see granularity.
MIN_SLOPE_SPAN_S = 0.05


class Model(NamedTuple):
    """Cumulative energy per domain as lines: ``values + slopes x (t - anchors)``.

    Attributes:
        anchors: clock time of each domain's latest sample. Units: s.
        values: cumulative energy at the anchors. Units: J.
        slopes: power of the interval before the latest sample, never negative. Units: W.
    """

    anchors: tuple[float, ...]
    values: tuple[float, ...]
    slopes: tuple[float, ...]

    def at(self, t: float) -> tuple[float, ...]:
        """Cumulative energy per domain at clock time ``t``. Units: J."""
        elapsed = (t - a for a in self.anchors)
        return tuple(map(add, self.values, map(mul, self.slopes, elapsed)))

    @classmethod
    def concat(cls, models: list[Model]) -> Model:
        if len(models) == 1:
            return models[0]
        return cls(
            tuple(a for m in models for a in m.anchors),
            tuple(v for m in models for v in m.values),
            tuple(s for m in models for s in m.slopes),
        )


def interpolated_deltas(start: tuple[float, Model], end: tuple[float, Model]) -> tuple[float, ...]:
    """Energy per domain between two interpolated boundaries, never negative.

    Under one model (no sample arrived in between, the common case) this is
    power x elapsed time; across models each end is evaluated on its own model
    and a negative difference (the newer sample showed less energy than the
    older model extrapolated) is reported as 0.
    """
    (t0, m0), (t1, m1) = start, end
    if m0 is m1:
        return tuple(map((t1 - t0).__mul__, m1.slopes))
    return tuple(d if d > 0.0 else 0.0 for d in map(sub, m1.at(t1), m0.at(t0)))


GRACE_S = 1.0
"""Slack added to the time between two readings before the power ceiling is applied.

Counters update in steps (RAPL every ~1 ms, NVML every 20-100 ms), so two
reads close together can see one step's worth of energy in almost no time.
Units: s."""

MAX_REJECTED_IN_A_ROW = 50
"""Implausible readings in a row after which a source is dropped (5 s at the default 0.1 s)."""


class SourceState:
    """One meter with its latest model: readings checked, failures survived.

    Args:
        meter: the open meter.
        strict: re-raise read failures and implausible readings instead of
            surviving them; once failed, it keeps raising.
        on_drop: called once with the note when the source is dropped.
        on_note: called once with the note when a first reading is rejected.
        clock: the tracker's clock, for figures extrapolated past a gap.

    Every reading is checked at this boundary: finite, never decreasing, and
    no faster than the domain's ceiling (:attr:`Domain.max_power_w`) allows
    since the previous reading. An implausible reading is replaced by the
    power before it (the counter is re-anchored, so a misread wrap adds
    nothing), with one warning per source. A source that fails, or gives
    only implausible readings for :data:`MAX_REJECTED_IN_A_ROW` reads, is
    dropped: from then on its domains are *estimated* at the mean power it
    measured until then (method ``held-power``), so the run's figures and the
    policies acting on them go on, labelled, instead of reading 0 W.
    """

    def __init__(
        self,
        meter: Meter,
        *,
        strict: bool = False,
        on_drop: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.meter = meter
        self.domains = tuple(meter.domains())
        self.names = tuple(d.name for d in self.domains)
        self.strict = strict
        self.dropped_note: str | None = None
        self.failure: BaseException | None = None
        self.rejected = 0
        """Readings rejected as implausible so far."""
        self._in_a_row = 0
        self._on_drop = on_drop
        self._on_note = on_note
        self._clock = clock
        self._lock = threading.Lock()
        zeros = (0.0,) * len(self.names)
        # Replaced as one object, so the training thread always sees a consistent model.
        self.model = Model(zeros, zeros, zeros)
        self._slope_origin: tuple[float, tuple[float, ...]] | None = None
        self.primed = False
        """The model has a power: two readings at least :data:`MIN_SLOPE_SPAN_S` apart (or a
        drop, which holds the mean power)."""
        self._first: tuple[float, tuple[float, ...]] | None = None
        self._last_raw: tuple[float, tuple[float, ...]] | None = None
        self._offsets = zeros
        self._ceilings = tuple(d.max_power_w for d in self.domains)
        self.last_timestamp_s: float | None = None

    def sample(self) -> tuple[float, tuple[float, ...]]:
        """Read the meter now (thread-safe): the reading's time and cumulative values.

        After a skipped reading or a drop, the values are the model's at the
        tracker's clock (extrapolated at the power in force).
        """
        if self.dropped_note is not None:
            return self._extrapolated()
        with self._lock:
            try:
                reading = self.meter.read()
                raw = tuple(float(reading.energy_j[n]) for n in self.names)
            except ImplausibleReadingError as err:
                self._reject(str(err), err)
                return self._extrapolated()
            except Exception as err:
                self._drop(err)
                return self._extrapolated()
            values = self._checked(reading.timestamp_s, raw)
            if values is None:
                return self._extrapolated()
            self.model = self._next_model(reading.timestamp_s, values)
            self.last_timestamp_s = reading.timestamp_s
        return reading.timestamp_s, values

    def _extrapolated(self) -> tuple[float, tuple[float, ...]]:
        anchors = self.model.anchors
        now = self._clock() if self._clock is not None else (anchors[0] if anchors else 0.0)
        return now, self.model.at(now)

    def _checked(self, t1: float, raw: tuple[float, ...]) -> tuple[float, ...] | None:
        """The reading with the offsets applied, or None if it is to be skipped."""
        if not all(map(math.isfinite, raw)):
            self._reject(f"a reading is not finite ({_show(self.names, raw)})")
            return None
        previous = self._last_raw
        if previous is None:
            if min(raw, default=0.0) < 0:
                self._reject(f"a first reading is negative ({_show(self.names, raw)})")
                return None
            self._last_raw = (t1, raw)
            self._first = (t1, raw)
            return raw
        t0, raw0 = previous
        elapsed = max(t1 - t0, 0.0)
        offsets = list(self._offsets)
        bad = []
        for i, (a, b, ceiling) in enumerate(zip(raw0, raw, self._ceilings)):
            step = b - a
            if step < 0 or step > ceiling * (elapsed + GRACE_S):
                bad.append(f"{self.names[i]} {'fell' if step < 0 else 'rose'} by {abs(step):.6g} J "
                           f"in {elapsed:.3g} s (ceiling {ceiling:g} W)")  # fmt: skip
                # re-anchor: this interval counts at the power before it, later ones as read
                offsets[i] = self.model.at(t1)[i] - b
        self._last_raw = (t1, raw)
        if bad:
            self._offsets = tuple(offsets)
            self._reject("; ".join(bad))
        else:
            self._in_a_row = 0
        return tuple(v + o for v, o in zip(raw, self._offsets))

    def _reject(self, why: str, err: BaseException | None = None) -> None:
        self.rejected += 1
        self._in_a_row += 1
        note = (
            f"source {self.meter.name!r} gave an implausible reading: {why}; such readings are "
            "replaced by the power before them (estimated)"
        )
        if self.strict:
            self.failure = err or ImplausibleReadingError(note)
        elif self.rejected == 1:
            if self._on_note is not None:
                self._on_note(note)
            warn(note)
        if self._in_a_row >= MAX_REJECTED_IN_A_ROW:
            self._drop(ImplausibleReadingError(f"{self._in_a_row} implausible readings in a row"))

    def _next_model(self, t1: float, e1: tuple[float, ...]) -> Model:
        """Anchor the line at the new sample; re-estimate power over >= MIN_SLOPE_SPAN_S."""
        anchors = (t1,) * len(e1)
        origin = self._slope_origin
        if origin is None:
            self._slope_origin = (t1, e1)
            return Model(anchors, e1, (0.0,) * len(e1))
        t0, e0 = origin
        if t1 - t0 < MIN_SLOPE_SPAN_S:  # too close to tell power from counter granularity
            return Model(anchors, e1, self.model.slopes)
        self._slope_origin = (t1, e1)
        self.primed = True
        return Model(anchors, e1, _power(e0, e1, t1 - t0))

    def _drop(self, err: BaseException) -> None:
        held = self._mean_power()
        measured = self._first is not None and self.last_timestamp_s != self._first[0]
        self.dropped_note = (
            f"source {self.meter.name!r} ({', '.join(self.names)}) failed and was dropped: "
            f"{type(err).__name__}: {err}; "
            + (
                f"from then on its domains are estimated at the mean power it measured until "
                f"then ({_show(self.names, held, 'W')}), and energy checkpoints and budgets go "
                "on with that estimate"
                if measured
                else "it measured nothing before, so its domains add 0 J (an estimate, not a "
                "measurement); meter with another source (green-callbacks meters)"
            )
        )
        self.failure = err
        anchor = self.last_timestamp_s if self.last_timestamp_s is not None else 0.0
        values = self.model.at(anchor)
        self.model = Model((anchor,) * len(values), values, held)
        self.primed = True
        self.domains = tuple(
            replace(d, kind="estimated", method=HELD_POWER, detail=f"{d.source} failed; "
                    f"held at its mean measured power, {w:.4g} W")
            for d, w in zip(self.domains, held)
        )  # fmt: skip
        if self._on_drop is not None:
            self._on_drop(self.dropped_note)
        if not self.strict:
            warn(self.dropped_note)

    def _mean_power(self) -> tuple[float, ...]:
        """Mean power from the first to the latest accepted reading (0 W without a span)."""
        if self._first is None or self.last_timestamp_s is None:
            return (0.0,) * len(self.names)
        t0, e0 = self._first
        span = self.last_timestamp_s - t0
        if span <= 0:
            return (0.0,) * len(self.names)
        return _power(e0, self.model.values, span)

    def raise_if_strict(self) -> None:
        """In strict mode, raise a failure recorded on any thread (every time: it sticks)."""
        if self.strict and self.failure is not None:
            note = self.dropped_note or f"source {self.meter.name!r}: {self.failure}"
            raise MeterReadError(f"strict mode: {note}") from self.failure


def _power(start: tuple[float, ...], end: tuple[float, ...], span: float) -> tuple[float, ...]:
    """Power per domain between two cumulative readings ``span`` seconds apart, never negative."""
    return tuple(max((b - a) / span, 0.0) for a, b in zip(start, end))


def _show(names: tuple[str, ...], values: tuple[float, ...], unit: str = "J") -> str:
    return ", ".join(f"{n}={v:.6g} {unit}" for n, v in zip(names, values))


class Sampler:
    """A daemon thread that calls ``poll`` every ``interval_s`` until stopped.

    Args:
        poll: reads every source; must not raise (sources drop themselves).
        interval_s: seconds between polls.
    """

    def __init__(self, poll: Callable[[], None], interval_s: float):
        if interval_s <= 0:
            raise TrackerConfigError(f"sample interval must be > 0 s, got {interval_s}")
        self.interval_s = interval_s
        self._poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="green-callbacks-sampler", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._poll()

    def stop(self) -> None:
        """Stop and join the thread. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
