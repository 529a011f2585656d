"""Sensor reads off the training thread: per-source linear models and the sampler thread.

Reading a sensor costs tens to hundreds of microseconds; a training step may
last one millisecond. So a background thread reads every source at a fixed
interval and keeps, per source, a linear model of its cumulative energy: the
latest sample and the power of the interval before it. A batch boundary only
reads the clock and keeps a reference to the current model (the figure is then
flagged ``interpolated``). Epoch and run boundaries take a fresh read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from operator import add, mul, sub
from typing import NamedTuple

from green_callbacks.errors import MeterReadError, TrackerConfigError, warn
from green_callbacks.meters.base import Meter

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


class SourceState:
    """One meter with its latest model; dropped (never raising) if it fails.

    Args:
        meter: the open meter.
        strict: re-raise read failures instead of dropping the source.
        on_drop: called once with the note when the source is dropped.
    """

    def __init__(
        self,
        meter: Meter,
        *,
        strict: bool = False,
        on_drop: Callable[[str], None] | None = None,
    ):
        self.meter = meter
        self.names = tuple(d.name for d in meter.domains())
        self.strict = strict
        self.dropped_note: str | None = None
        self.failure: BaseException | None = None
        self._on_drop = on_drop
        self._lock = threading.Lock()
        zeros = (0.0,) * len(self.names)
        # Replaced as one object, so the training thread always sees a consistent model.
        self.model = Model(zeros, zeros, zeros)
        self._slope_origin: tuple[float, tuple[float, ...]] | None = None
        self.last_timestamp_s: float | None = None

    def sample(self) -> tuple[float, ...]:
        """Read the meter now (thread-safe) and return its cumulative values."""
        if self.dropped_note is not None:
            return self.model.values
        with self._lock:
            try:
                reading = self.meter.read()
                values = tuple(reading.energy_j[n] for n in self.names)
            except Exception as err:
                self._drop(err)
                return self.model.values
            self.model = self._next_model(reading.timestamp_s, values)
            self.last_timestamp_s = reading.timestamp_s
        return values

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
        span = t1 - t0
        return Model(anchors, e1, tuple(max((b - a) / span, 0.0) for a, b in zip(e0, e1)))

    def _drop(self, err: BaseException) -> None:
        self.dropped_note = (
            f"source {self.meter.name!r} ({', '.join(self.names)}) failed and was dropped: "
            f"{type(err).__name__}: {err}; its figures stop at the last good reading"
        )
        self.failure = err
        values = self.model.values
        self.model = Model(self.model.anchors, values, (0.0,) * len(values))  # no extrapolation
        if self._on_drop is not None:
            self._on_drop(self.dropped_note)
        if not self.strict:
            warn(self.dropped_note)

    def raise_if_strict(self) -> None:
        """In strict mode, re-raise a failure recorded on any thread."""
        if self.strict and self.failure is not None:
            err, self.failure = self.failure, None
            raise MeterReadError(f"strict mode: {self.dropped_note}") from err


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
