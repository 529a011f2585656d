"""Sensor reads off the training thread: per-source sample state and the sampler thread.

Reading a sensor costs tens to hundreds of microseconds; a training step may
last one millisecond. So a background thread reads every source at a fixed
interval, and a batch boundary only reads the clock and interpolates from the
last two samples (the figure is then flagged ``interpolated``). Epoch and run
boundaries take a fresh read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from operator import add

from green_callbacks.errors import MeterReadError, warn
from green_callbacks.meters.base import Meter

Sample = tuple[float, tuple[float, ...]]


class SourceState:
    """One meter with its latest samples; dropped (never raising) if it fails.

    Args:
        meter: the open meter.
        strict: re-raise read failures instead of dropping the source.
    """

    def __init__(
        self, meter: Meter, *, strict: bool = False, on_drop: Callable[[str], None] | None = None
    ):
        self.meter = meter
        self.names = tuple(d.name for d in meter.domains())
        self.strict = strict
        self.dropped_note: str | None = None
        self.failure: BaseException | None = None
        self._on_drop = on_drop
        self._lock = threading.Lock()
        # (time, values, slope) of the latest sample, slope per second from the
        # sample before; replaced as one object so another thread always sees a
        # consistent model, and computed once per sample, not once per batch.
        self._model: tuple[float, tuple[float, ...], tuple[float, ...]] | None = None
        self._answered: tuple[float, ...] = (0.0,) * len(self.names)
        self._rebased_from: object = None
        self._base: tuple[float, tuple[float, ...], tuple[float, ...]] = (
            0.0,
            self._answered,
            self._answered,
        )

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
            self._model = _linear_model(self._model, reading.timestamp_s, values)
        return values

    def at(self, t: float) -> tuple[float, ...]:
        """Cumulative values at clock time ``t`` from the last two samples.

        Interpolates (or extrapolates past the latest sample at the power of
        the last interval), and never returns less than it returned before, so
        consecutive windows are never negative. The clamp is applied once per
        new sample (rebasing the line there); until the next sample the line
        only rises, so a batch boundary costs one multiply-add per domain.
        """
        model = self._model
        if model is None:
            return self._answered
        if model is not self._rebased_from:
            t1, e1, slope = model
            values = tuple(map(max, map(add, e1, map((t - t1).__mul__, slope)), self._answered))
            self._rebased_from, self._base = model, (t, values, slope)
        else:
            tb, eb, slope = self._base
            dt = t - tb
            values = tuple(map(add, eb, map(dt.__mul__, slope))) if dt > 0 else self._answered
        self._answered = values
        return values

    def _answered_or_latest(self) -> tuple[float, ...]:
        if self._model is None:
            return self._answered
        return tuple(map(max, self._model[1], self._answered))

    def _drop(self, err: BaseException) -> None:
        self.dropped_note = (
            f"source {self.meter.name!r} ({', '.join(self.names)}) failed and was dropped: "
            f"{type(err).__name__}: {err}; its figures stop at the last good reading"
        )
        self.failure = err
        if self._on_drop is not None:
            self._on_drop(self.dropped_note)
        if not self.strict:
            warn(self.dropped_note)

    def raise_if_strict(self) -> None:
        """In strict mode, re-raise a failure recorded on any thread."""
        if self.strict and self.failure is not None:
            err, self.failure = self.failure, None
            raise MeterReadError(f"strict mode: {self.dropped_note}") from err


def _linear_model(
    previous: tuple[float, tuple[float, ...], tuple[float, ...]] | None,
    t1: float,
    e1: tuple[float, ...],
) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """The latest sample and the power (never negative) of the interval that led to it."""
    if previous is None or t1 <= previous[0]:
        return t1, e1, (0.0,) * len(e1)
    t0, e0, _ = previous
    span = t1 - t0
    return t1, e1, tuple(max((b - a) / span, 0.0) for a, b in zip(e0, e1))


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

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
