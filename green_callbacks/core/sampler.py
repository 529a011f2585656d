"""Sensor reads off the training thread: per-source sample state and the sampler thread.

Reading a sensor costs tens to hundreds of microseconds; a training step may
last one millisecond. So a background thread reads every source at a fixed
interval, and a batch boundary only reads the clock and interpolates from the
last two samples (the figure is then flagged ``interpolated``). Epoch and run
boundaries take a fresh read.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

from green_callbacks.errors import EnergySourceWarning, MeterReadError
from green_callbacks.meters.base import Meter

Sample = tuple[float, tuple[float, ...]]


class SourceState:
    """One meter with its latest samples; dropped (never raising) if it fails.

    Args:
        meter: the open meter.
        strict: re-raise read failures instead of dropping the source.
    """

    def __init__(self, meter: Meter, *, strict: bool = False):
        self.meter = meter
        self.names = tuple(d.name for d in meter.domains())
        self.strict = strict
        self.dropped_note: str | None = None
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        # (previous, latest) sample, replaced as one object so readers on
        # another thread always see a consistent pair.
        self._pair: tuple[Sample, Sample] | None = None
        self._answered: tuple[float, ...] = (0.0,) * len(self.names)

    def sample(self) -> tuple[float, ...]:
        """Read the meter now (thread-safe) and return its cumulative values."""
        if self.dropped_note is not None:
            return self._answered_or_latest()
        with self._lock:
            try:
                reading = self.meter.read()
                values = tuple(reading.energy_j[n] for n in self.names)
            except Exception as err:
                self._drop(err)
                return self._answered_or_latest()
            latest = (reading.timestamp_s, values)
            self._pair = (self._pair[1] if self._pair else latest, latest)
        return values

    def at(self, t: float) -> tuple[float, ...]:
        """Cumulative values at clock time ``t`` from the last two samples.

        Interpolates (or extrapolates past the latest sample at the power of
        the last interval), and never returns less than it returned before, so
        consecutive windows are never negative.
        """
        pair = self._pair
        if pair is None:
            return self._answered
        (t0, e0), (t1, e1) = pair
        if t1 > t0:
            f = (t - t1) / (t1 - t0)
            values = tuple(b + (b - a) * f for a, b in zip(e0, e1))
        else:
            values = e1
        answered = tuple(v if v > a else a for v, a in zip(values, self._answered))
        self._answered = answered
        return answered

    def _answered_or_latest(self) -> tuple[float, ...]:
        if self._pair is None:
            return self._answered
        latest = self._pair[1][1]
        return tuple(max(a, b) for a, b in zip(latest, self._answered))

    def _drop(self, err: BaseException) -> None:
        self.dropped_note = (
            f"source {self.meter.name!r} ({', '.join(self.names)}) failed and was dropped: "
            f"{type(err).__name__}: {err}; its figures stop at the last good reading"
        )
        self.failure = err
        if not self.strict:
            warnings.warn(f"green_callbacks: {self.dropped_note}", EnergySourceWarning, stacklevel=4)

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
            raise ValueError(f"sample interval must be > 0 s, got {interval_s}")
        self.interval_s = interval_s
        self._poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="green-callbacks-sampler", daemon=True)
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

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
