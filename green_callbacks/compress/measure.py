"""Inference energy and time per sample, measured with the metering core, models interleaved.

Framework-free: a model is a function that runs one inference batch. To
compare an original with its compressed version fairly on a busy machine,
the models take turns in rounds and each one's figure is its median round,
so a drift in the machine's load hits both alike.

Example (a FakeMeter on a FakeClock stands in for the hardware and for time):
    >>> from green_callbacks.testing import FakeClock, FakeMeter
    >>> clock = FakeClock()
    >>> costs = compare_inference(
    ...     {"big": lambda: clock.advance(0.02), "small": lambda: clock.advance(0.01)},
    ...     batch_size=10, meters=FakeMeter({"cpu:0": 50.0}, clock=clock), clock=clock,
    ...     rounds=3, min_round_s=0.1)
    >>> round(costs["big"].j_per_sample, 6), round(costs["small"].j_per_sample, 6)
    (0.1, 0.05)
    >>> costs["small"].energy_kind
    'measured'
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from green_callbacks.compress.report import CompressionCost, ModelFigures
from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.errors import CompressConfigError
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock


@dataclass(frozen=True)
class Measurement:
    """How the compression report measures inference.

    Attributes:
        batch_size: samples per inference call.
        meters: as :class:`EnergyTracker` (``"auto"``: this machine's best sources).
        rounds: rounds per model; each figure is the median round.
        min_round_s: each round runs its model for at least this long. Units: s.
    """

    batch_size: int = 64
    meters: Any = "auto"
    rounds: int = 5
    min_round_s: float = 0.5

    def compare(self, models: Mapping[str, Callable[[], Any]]) -> dict[str, InferenceCost]:
        """:func:`compare_inference` with these settings."""
        return compare_inference(
            models, batch_size=self.batch_size, meters=self.meters, rounds=self.rounds,
            min_round_s=self.min_round_s,
        )  # fmt: skip

    @contextmanager
    def metering(self) -> Iterator[list[CompressionCost]]:
        """Meter the work inside (compressing a model) with these meters; the list it gives
        receives its :class:`CompressionCost` once the work has finished without error."""
        tracker = EnergyTracker(self.meters).start()
        spent: list[CompressionCost] = []
        try:
            yield spent
            kind, source = tracker.kind, tracker.source
        finally:
            total = tracker.stop()
        spent.append(CompressionCost(total.energy_j, total.duration_s, kind, source))


DEFAULT_MEASUREMENT = Measurement()


@dataclass(frozen=True)
class InferenceCost:
    """One model's inference cost on this device.

    Attributes:
        j_per_sample: median over rounds of energy / samples. Units: J.
        s_per_sample: median over rounds of time / samples. Units: s.
        batch_size: samples per call.
        batches: calls measured in all (warm-up aside).
        energy_kind: ``measured``, ``estimated``, ``replayed`` or ``mixed``.
        energy_source: the meters, as ``domain=label`` pairs.
    """

    j_per_sample: float
    s_per_sample: float
    batch_size: int
    batches: int
    energy_kind: str
    energy_source: str

    def figures(
        self, *, params: int, macs: float | None, sizes: tuple[int, int], accuracy: float | None
    ) -> ModelFigures:
        """This cost with the model's other figures; ``sizes`` is (raw, gzip) bytes."""
        return ModelFigures(
            params=params, macs=macs, size_bytes=sizes[0], gzip_bytes=sizes[1],
            accuracy=accuracy, j_per_sample=self.j_per_sample, s_per_sample=self.s_per_sample,
            batch_size=self.batch_size, energy_kind=self.energy_kind,
            energy_source=self.energy_source,
        )  # fmt: skip


def compare_inference(
    models: Mapping[str, Callable[[], Any]],
    *,
    batch_size: int,
    meters: Any = "auto",
    rounds: int = 5,
    min_round_s: float = 0.5,
    warmup_batches: int = 2,
    clock: Clock = DEFAULT_CLOCK,
) -> dict[str, InferenceCost]:
    """Measure each model's inference energy and time per sample, in interleaved rounds.

    Args:
        models: name -> a function running one inference batch of ``batch_size``
            samples (it must finish its work: synchronize a GPU inside it).
        batch_size: samples per call.
        meters: as :class:`EnergyTracker`.
        rounds: rounds per model; each figure is the median round.
        min_round_s: each round repeats its model's batch for at least this long,
            so that a round spans several sensor updates. Units: s.
        warmup_batches: unmeasured calls per model first (compilation, caches).
        clock: the tracker's clock (tests pass a fake one).
    """
    if not models:
        raise CompressConfigError("compare_inference needs at least one model")
    if batch_size < 1 or rounds < 1:
        raise CompressConfigError(
            f"batch_size and rounds must be >= 1, got batch_size={batch_size}, rounds={rounds}"
        )
    for run in models.values():
        for _ in range(warmup_batches):
            run()
    tracker = EnergyTracker(meters, sample_interval_s=None, clock=clock).start()
    per_sample: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    calls = dict.fromkeys(models, 0)
    try:
        for _ in range(rounds):
            for name, run in models.items():
                window = tracker.open("phase", name, exact=True)
                start, done = clock(), 0
                while done == 0 or clock() - start < min_round_s:
                    run()
                    done += 1
                result = tracker.close(window, exact=True)
                samples = done * batch_size
                per_sample[name].append((result.energy_j / samples, result.duration_s / samples))
                calls[name] += done
        kind = tracker.kind
        source = tracker.source
    finally:
        tracker.stop()
    costs = {}
    for name, figures in per_sample.items():
        j_per_sample = statistics.median(j for j, _ in figures)
        s_per_sample = statistics.median(s for _, s in figures)
        costs[name] = InferenceCost(
            j_per_sample, s_per_sample, batch_size, calls[name], kind, source
        )
    return costs
