from __future__ import annotations

import math

import pytest

from green_callbacks.errors import MeterSpecError
from green_callbacks.meters import EstimateConfig, EstimateMeter
from green_callbacks.meters.estimate import BYTES_PER_GIB
from green_callbacks.testing import FakeClock


class FakeHostProbe:
    """A fake host: CPU seconds and memory set by the test; ``tick_s`` counts CPU time in
    ticks, as the kernel does (10 ms), 0 exactly."""

    def __init__(self, cpus: int = 4, tick_s: float = 0.0) -> None:
        self.cpus = cpus
        self.tick_s = tick_s
        self.busy = 0.0
        self.memory = {"total": 16 * BYTES_PER_GIB, "used": 4 * BYTES_PER_GIB}

    def run(self, seconds: float, utilisation: float) -> None:
        self.busy += seconds * self.cpus * utilisation

    def busy_cpu_s(self) -> float:
        if not self.tick_s:
            return self.busy
        return math.floor(self.busy / self.tick_s + 1e-9) * self.tick_s

    def cpu_count(self) -> int:
        return self.cpus

    def memory_bytes(self, mode: str) -> int:
        return self.memory[mode]


@pytest.mark.parametrize(
    ("utilisation", "idle_fraction", "watts"),
    [(0.5, 0.0, 50.0), (0.0, 0.2, 20.0), (1.0, 0.2, 100.0)],
)
def test_cpu_power_follows_utilisation_and_tdp(
    utilisation: float, idle_fraction: float, watts: float
) -> None:
    clock, probe = FakeClock(), FakeHostProbe()
    meter = EstimateMeter(
        EstimateConfig(tdp_w=100.0, idle_fraction=idle_fraction, parts=("cpu",)),
        probe=probe,
        clock=clock,
    )
    clock.advance(2.0)
    probe.run(2.0, utilisation=utilisation)

    assert meter.read().energy_j == {"cpu": pytest.approx(watts * 2.0)}


@pytest.mark.parametrize(("mode", "gib"), [("total", 16), ("used", 4)])
def test_ram_power_from_installed_or_used_memory(mode: str, gib: int) -> None:
    clock = FakeClock()
    meter = EstimateMeter(
        EstimateConfig(ram=mode, ram_w_per_gb=0.5, parts=("dram",)),
        probe=FakeHostProbe(),
        clock=clock,
    )  # type: ignore[arg-type]
    clock.advance(10.0)

    assert meter.read().energy_j == {"dram": pytest.approx(0.5 * gib * 10.0)}


def test_every_figure_is_labelled_estimated() -> None:
    meter = EstimateMeter(probe=FakeHostProbe(), clock=FakeClock())

    assert [(d.name, d.kind) for d in meter.domains()] == [
        ("cpu", "estimated"),
        ("dram", "estimated"),
    ]
    assert "tdp_w=85" in meter.domains()[0].detail


def test_energy_accumulates_across_reads_with_changing_load() -> None:
    clock, probe = FakeClock(), FakeHostProbe(cpus=2)
    meter = EstimateMeter(EstimateConfig(tdp_w=80.0, parts=("cpu",)), probe=probe, clock=clock)
    for utilisation in (1.0, 0.25):
        clock.advance(1.0)
        probe.run(1.0, utilisation=utilisation)
        last = meter.read().energy_j["cpu"]

    assert last == pytest.approx(80.0 + 20.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tdp_w": 0}, "tdp_w must be > 0"),
        ({"idle_fraction": 1.5}, "between 0 and 1"),
        ({"ram_w_per_gb": -1}, "ram_w_per_gb must be >= 0"),
        ({"ram": "free"}, "'total' or 'used'"),
        ({"parts": ("gpu",)}, "parts must be"),
    ],
)
def test_bad_constants_are_rejected_with_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MeterSpecError, match=message):
        EstimateConfig(**kwargs)  # type: ignore[arg-type]


def test_real_host_probe_gives_positive_energy() -> None:
    clock = FakeClock()
    meter = EstimateMeter(clock=clock)
    sum(i * i for i in range(200_000))  # some real CPU work between the reads
    clock.advance(1.0)

    energy = meter.read().energy_j

    assert energy["dram"] > 0
    assert energy["cpu"] >= 0


@pytest.mark.parametrize("reads", [1, 10, 1000])
def test_the_energy_does_not_depend_on_how_often_the_meter_is_read(reads: int) -> None:
    """The kernel counts CPU time in 10 ms ticks: a read every millisecond sees most intervals
    without a tick. The busy energy of the second is the same however often it is read (it
    fell to a tenth when each interval's utilisation was multiplied by its length)."""
    clock, probe = FakeClock(), FakeHostProbe(cpus=2, tick_s=0.01)
    config = EstimateConfig(tdp_w=100.0, idle_fraction=0.2, parts=("cpu",))
    meter = EstimateMeter(config, probe=probe, clock=clock)
    for _ in range(reads):
        clock.advance(1.0 / reads)
        probe.run(1.0 / reads, utilisation=0.5)
        last = meter.read().energy_j["cpu"]

    assert last == pytest.approx(100.0 * (0.2 + 0.8 * 0.5))


def test_a_utilisation_above_one_is_capped_over_the_run() -> None:
    """A probe that counts more CPUs than it says it has never gives more than the TDP."""
    clock, probe = FakeClock(), FakeHostProbe(cpus=2)
    meter = EstimateMeter(EstimateConfig(tdp_w=100.0, parts=("cpu",)), probe=probe, clock=clock)
    probe.cpus = 4  # counted over 4 CPUs, divided by 2
    clock.advance(1.0)
    probe.run(1.0, utilisation=1.0)

    assert meter.read().energy_j == {"cpu": 100.0}
