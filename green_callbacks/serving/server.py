"""Serve a request stream with a batching policy, in real time, metered.

One server, one model: requests arrive on the stream's schedule, wait in a
queue, and the policy decides when the free model takes how many. Time is real
(the clock and sleep are injectable for tests), so the idle power between
batches is part of the result, as it is part of serving. Each batch is a
tracker window; the whole serving period is another, so the figures keep their
provenance (measured, estimated or replayed, and the sources).

Example, a model that takes 10 ms whatever the batch on a fake 50 W meter and a
fake clock (the figures are exact):
    >>> from green_callbacks.serving import parse_policy, parse_stream
    >>> from green_callbacks.testing import FakeClock, FakeMeter
    >>> clock = FakeClock()
    >>> meter = FakeMeter({"cpu:0": 50.0}, clock=clock)
    >>> config = ServeConfig(requests=8, meters=meter, sample_interval_s=None, idle_s=0.0,
    ...                      warmup_batches=0)
    >>> result = serve(lambda n: clock.advance(0.010), parse_stream("regular:100"),
    ...                parse_policy("fixed:4"), config, clock=clock, sleep=clock.sleep)
    >>> result.batches, result.latency_max_ms, result.duration_s, round(result.j_per_request, 6)
    (2, 40.0, 0.08, 0.5)
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.errors import GreenCallbacksError
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock
from green_callbacks.serving.policy import Policy
from green_callbacks.serving.stream import ServingConfigError, Stream

KEEP_UP_SHARE = 0.05
"""A server kept up when, over the arrival period, it answered all but this share of the
requests and its queue grew by less than this share of the arrival rate."""
WARMUP_SIZE = 32
"""Warm-up batch size for a policy without a size (greedy with no cap)."""

RunBatch = Callable[[int], Any]
"""Runs the model on a batch of n requests and returns when the work is done."""


class ServingError(GreenCallbacksError, RuntimeError):
    """The model failed on a batch while serving."""


@dataclass(frozen=True)
class ServeConfig:
    """How one configuration is served and metered.

    Attributes:
        requests: requests to serve (the run's length).
        max_s: wall-clock cap: serving stops here, served or not. Units: s.
        warmup_batches: unmeasured batches first, at the policy's batch size
            and at 1 (the thesis: 256 batches of 32).
        idle_s: idle power measured first, for the figures above idle; 0
            skips it. Units: s.
        meters: as :class:`~green_callbacks.core.EnergyTracker`.
        sample_interval_s: the tracker's sampling interval. Units: s.
    """

    requests: int = 1000
    max_s: float = 60.0
    warmup_batches: int = 8
    idle_s: float = 1.0
    meters: Any = "auto"
    sample_interval_s: float | None = 0.05

    def __post_init__(self) -> None:
        if self.requests < 1 or self.warmup_batches < 0:
            raise ServingConfigError(
                f"requests must be >= 1 and warmup_batches >= 0, got {self.requests} and "
                f"{self.warmup_batches}"
            )
        if not self.max_s > 0 or self.idle_s < 0:
            raise ServingConfigError(
                f"max_s must be > 0 s and idle_s >= 0 s, got {self.max_s} and {self.idle_s}"
            )


@dataclass(frozen=True)
class ServingResult:
    """One stream served with one policy.

    Attributes:
        stream: the stream's spec.
        policy: the policy's spec.
        rate_rps: the stream's mean arrival rate. Units: requests/s.
        requests: requests asked for.
        served: requests answered (fewer when the wall-clock cap cut the run).
        batches: batches run.
        mean_batch: requests per batch.
        duration_s: from the first arrival to the last answer (or the cap). Units: s.
        energy_j: energy of that period, idle included. Units: J.
        busy_j: energy inside the batches. Units: J.
        idle_w: idle power measured first, or None. Units: W.
        j_per_request: ``energy_j`` per request served, idle included; None when
            nothing was served (``note`` says why). Units: J.
        j_per_request_above_idle: the same above idle power, or None. Units: J.
        latency_min_ms: arrival to answer, shortest, of the requests served (every
            latency is None when nothing was served). Units: ms.
        latency_mean_ms: arrival to answer, mean. Units: ms.
        latency_p50_ms: median. Units: ms.
        latency_p95_ms: 95th percentile. Units: ms.
        latency_p99_ms: 99th percentile. Units: ms.
        latency_max_ms: longest. Units: ms.
        throughput_rps: requests served per second of the period. Units: requests/s.
        queue_growth_rps: slope of the queue left after each dispatch, fitted over the
            arrival period (first to last arrival). Units: requests/s.
        kept_up: served everything within the cap and, over the arrival period,
            answered at least 95 % of the requests by the last arrival plus one
            batch's time, with the queue growing by less than 5 % of the arrival rate
            (``KEEP_UP_SHARE``); the drain after the last arrival does not count.
        capped: the wall-clock cap ended the run.
        energy_kind: ``measured``, ``estimated``, ``replayed`` or ``mixed``.
        energy_source: the meters, as ``domain=label`` pairs.
        note: why a figure is None, or what limits the figures ("" when nothing does).
    """

    stream: str
    policy: str
    rate_rps: float
    requests: int
    served: int
    batches: int
    mean_batch: float
    duration_s: float
    energy_j: float
    busy_j: float
    idle_w: float | None
    j_per_request: float | None
    j_per_request_above_idle: float | None
    latency_min_ms: float | None
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    throughput_rps: float
    queue_growth_rps: float
    kept_up: bool
    capped: bool
    energy_kind: str
    energy_source: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)

    @classmethod
    def from_record(cls, data: object) -> ServingResult | None:
        """A result from its :meth:`to_dict` form; None for anything of another shape."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(**data)
        except TypeError:
            return None


@dataclass
class _Log:
    latencies: list[float]
    sizes: list[int]
    batch_s: list[float]
    backlog: list[tuple[float, int]]
    busy_j: float = 0.0
    capped: bool = False


def serve(
    run_batch: RunBatch,
    stream: Stream,
    policy: Policy,
    config: ServeConfig | None = None,
    *,
    clock: Clock = DEFAULT_CLOCK,
    sleep: Callable[[float], None] = time.sleep,
) -> ServingResult:
    """Serve ``stream`` with ``policy`` on ``run_batch`` in real time and meter it.

    Args:
        run_batch: runs the model on n requests and returns when done (a GPU
            model synchronises inside it); :func:`~green_callbacks.serving.batch_runner`
            makes one from a torch, Keras or Hugging Face model.
        stream: when requests arrive (:func:`parse_stream`).
        policy: how they are batched (:func:`parse_policy`).
        config: length, cap, warm-up, idle baseline and meters.
        clock: monotonic clock (tests pass a fake one).
        sleep: how to wait for the next arrival (tests pass the fake clock's).

    Raises:
        ServingError: the model failed on a batch; the message names its size.
    """
    config = config or ServeConfig()
    arrivals = stream.arrivals(config.requests)
    for size in sorted({policy.batch or WARMUP_SIZE, 1}) * config.warmup_batches:
        _run(run_batch, size)
    tracker = EnergyTracker(
        config.meters, sample_interval_s=config.sample_interval_s, idle_baseline_s=config.idle_s,
        clock=clock, sleep=sleep,
    ).start()  # fmt: skip
    try:
        period = tracker.open("phase", "serve", exact=True)
        log = _loop(run_batch, arrivals, policy, config.max_s, tracker, clock, sleep)
        total = tracker.close(period)
        kind = tracker.kind
        source = tracker.source
    finally:
        tracker.stop()
    return _result(stream, policy, config, log, total.energy_j, total.idle_j, total.duration_s,
                   kind, source)  # fmt: skip


def _loop(
    run_batch: RunBatch,
    arrivals: list[float],
    policy: Policy,
    max_s: float,
    tracker: EnergyTracker,
    clock: Clock,
    sleep: Callable[[float], None],
) -> _Log:
    log = _Log([], [], [], [])
    queue: deque[int] = deque()
    t0, arrived, count = clock(), 0, len(arrivals)
    while len(log.latencies) < count:
        now = clock() - t0
        if now >= max_s:
            log.capped = True
            break
        while arrived < count and arrivals[arrived] <= now:
            queue.append(arrived)
            arrived += 1
        oldest = now - arrivals[queue[0]] if queue else 0.0
        take = policy.take(len(queue), oldest, arrived < count)
        if take:
            batch = [queue.popleft() for _ in range(take)]
            log.backlog.append((now, len(queue)))
            window = tracker.open("batch", "serve", exact=True)
            _run(run_batch, take)
            log.busy_j += tracker.close(window, exact=True).energy_j
            done = clock() - t0
            log.latencies.extend(done - arrivals[i] for i in batch)
            log.sizes.append(take)
            log.batch_s.append(done - now)
            continue
        wake = [max_s]
        if arrived < count:
            wake.append(arrivals[arrived])
        if queue and (deadline := policy.deadline_s(arrivals[queue[0]])) is not None:
            wake.append(deadline)
        sleep(max(min(wake) - now, 1e-6))
    return log


def _run(run_batch: RunBatch, size: int) -> None:
    try:
        run_batch(size)
    except Exception as err:
        raise ServingError(
            f"the model failed on a batch of {size} request(s): {type(err).__name__}: {err}. "
            "Check that it runs on every batch size the policy can send (1 up to its size)"
        ) from err


def _result(
    stream: Stream,
    policy: Policy,
    config: ServeConfig,
    log: _Log,
    energy_j: float,
    idle_j: float | None,
    duration_s: float,
    kind: str,
    source: str,
) -> ServingResult:
    served = len(log.latencies)
    ms = sorted(latency * 1000.0 for latency in log.latencies)
    growth, answered = _arrival_period(stream.arrivals(config.requests), log)
    kept_up = (not log.capped and served == config.requests
               and answered >= (1.0 - KEEP_UP_SHARE) * config.requests
               and growth <= KEEP_UP_SHARE * stream.rate_rps)  # fmt: skip
    if not served:
        note = (f"nothing was served before the wall-clock cap ({config.max_s:g} s): latencies "
                "and joules per request have no value. Raise the cap (--max-s), or use a policy "
                "that sends smaller batches for this rate")  # fmt: skip
    elif log.capped:
        note = (f"the wall-clock cap ({config.max_s:g} s) ended the run with {served} of "
                f"{config.requests} requests served: latencies of those served only")  # fmt: skip
    else:
        note = ""
    return ServingResult(
        stream=stream.label, policy=policy.label, rate_rps=stream.rate_rps,
        requests=config.requests, served=served, batches=len(log.sizes),
        mean_batch=served / max(len(log.sizes), 1), duration_s=duration_s, energy_j=energy_j,
        busy_j=log.busy_j, idle_w=None if idle_j is None else idle_j / duration_s,
        j_per_request=energy_j / served if served else None,
        j_per_request_above_idle=None if idle_j is None or not served
        else (energy_j - idle_j) / served,
        latency_min_ms=ms[0] if ms else None,
        latency_mean_ms=statistics.fmean(ms) if ms else None,
        latency_p50_ms=_percentile(ms, 50), latency_p95_ms=_percentile(ms, 95),
        latency_p99_ms=_percentile(ms, 99), latency_max_ms=ms[-1] if ms else None,
        throughput_rps=served / duration_s, queue_growth_rps=growth, kept_up=kept_up,
        capped=log.capped, energy_kind=kind, energy_source=source, note=note,
    )  # fmt: skip


def _arrival_period(arrivals: list[float], log: _Log) -> tuple[float, int]:
    """The queue's growth over the arrival period, and the requests answered by its end.

    The period runs from the first arrival to the last, plus the longest batch's time
    (the last arrival's own batch); the drain of a backlog after it does not count, so
    a server that falls behind is not excused by the queue emptying at the end.
    Requests are answered first in, first out: the k-th latency is request k's.
    """
    end = arrivals[-1] + max(log.batch_s, default=0.0)
    answered = sum(a + latency <= end for a, latency in zip(arrivals, log.latencies))
    growth = _slope([(t, q) for t, q in log.backlog if t <= arrivals[-1]])
    return growth, answered


def _percentile(ordered: list[float], q: float) -> float | None:
    """The q-th percentile of sorted values, linear between the closest ranks (NumPy's default).

    None for no values.
    """
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (time, queue length); 0 with fewer than two distinct times."""
    if len({t for t, _ in points}) < 2:
        return 0.0
    return statistics.linear_regression([t for t, _ in points], [q for _, q in points]).slope
