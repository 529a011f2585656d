"""An energy *estimate* for machines without a sensor; every figure says so.

Model (the constants and their sources are in docs/measurement.md):

- CPU: ``P = tdp_w * (idle_fraction + (1 - idle_fraction) * u)`` where ``u`` is
  the utilisation of all logical CPUs the OS shows (from ``/proc/stat`` through
  psutil). With the default ``idle_fraction=0`` this is the Green Algorithms
  form, power proportional to use of the TDP.
- RAM: ``P = ram_w_per_gb * GiB`` of installed memory (``ram="total"``) or of
  memory in use (``ram="used"``).

The model is linear in ``u``, so the energy between two reads is the idle
part times the elapsed time plus the busy part times the busy CPU seconds the
kernel counted meanwhile, over the number of CPUs: exact for the model however
often it is read. (The kernel counts CPU time in ticks of 10 ms: a utilisation
taken over a shorter interval reads 0 or far above the truth, and multiplying
it by the interval lost up to 90 % of the busy energy when reads came every
step.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from green_callbacks.errors import MeterSpecError
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Domain, Reading

DEFAULT_TDP_W = 85.0
DEFAULT_IDLE_FRACTION = 0.0
DEFAULT_RAM_W_PER_GB = 0.3725
BYTES_PER_GIB = 1024**3
# The sampler reads the estimate every 0.5 s: it follows load changes
# of training loops closely enough while costing ~20 us of psutil per read.
ESTIMATE_POLL_INTERVAL_S = 0.5

Part = Literal["cpu", "dram"]
RamMode = Literal["total", "used"]


class HostProbe(Protocol):
    """What the estimate reads from the host; tests pass a fake."""

    def busy_cpu_s(self) -> float:
        """Cumulative busy CPU seconds, summed over all logical CPUs. Units: s."""
        ...

    def cpu_count(self) -> int:
        """The logical CPUs :meth:`busy_cpu_s` sums over."""
        ...

    def memory_bytes(self, mode: RamMode) -> int:
        """Installed (``total``) or in-use (``used``) memory. Units: bytes."""
        ...


class PsutilProbe:
    """The real host, through psutil."""

    def busy_cpu_s(self) -> float:
        import psutil

        times = psutil.cpu_times()
        busy: float = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        return busy

    def cpu_count(self) -> int:
        import psutil

        return psutil.cpu_count() or 1

    def memory_bytes(self, mode: RamMode) -> int:
        import psutil

        memory = psutil.virtual_memory()
        return int(memory.total if mode == "total" else memory.used)


@dataclass(frozen=True)
class EstimateConfig:
    """Constants of the estimate; every one can be set from a spec string.

    Attributes:
        tdp_w: thermal design power of the CPUs the OS shows. Units: W.
        idle_fraction: share of ``tdp_w`` drawn at zero utilisation (0..1).
        ram_w_per_gb: memory power per GiB. Units: W/GiB.
        ram: ``"total"`` installed memory or ``"used"`` memory.
        parts: which domains to estimate (``cpu``, ``dram``).
    """

    tdp_w: float = DEFAULT_TDP_W
    idle_fraction: float = DEFAULT_IDLE_FRACTION
    ram_w_per_gb: float = DEFAULT_RAM_W_PER_GB
    ram: RamMode = "total"
    parts: tuple[Part, ...] = ("cpu", "dram")

    def __post_init__(self) -> None:
        if self.tdp_w <= 0:
            raise MeterSpecError(f"estimate tdp_w must be > 0 W, got {self.tdp_w}; e.g. tdp_w=65")
        if not 0.0 <= self.idle_fraction <= 1.0:
            raise MeterSpecError(
                f"estimate idle_fraction must be between 0 and 1, got {self.idle_fraction}"
            )
        if self.ram_w_per_gb < 0:
            raise MeterSpecError(f"estimate ram_w_per_gb must be >= 0, got {self.ram_w_per_gb}")
        if self.ram not in ("total", "used"):
            raise MeterSpecError(f"estimate ram must be 'total' or 'used', got {self.ram!r}")
        bad = [p for p in self.parts if p not in ("cpu", "dram")]
        if bad or not self.parts:
            raise MeterSpecError(
                f"estimate parts must be 'cpu', 'dram' or 'cpu+dram', got {'+'.join(self.parts)!r}"
            )


class EstimateMeter:
    """Estimated cumulative energy of the host CPUs and memory.

    Args:
        config: model constants (defaults documented in docs/measurement.md).
        probe: where utilisation and memory come from (psutil by default).
        clock: monotonic clock.
    """

    name = "estimate"
    max_poll_interval_s: float | None = ESTIMATE_POLL_INTERVAL_S

    def __init__(
        self,
        config: EstimateConfig | None = None,
        *,
        probe: HostProbe | None = None,
        clock: Clock = DEFAULT_CLOCK,
    ):
        self.config = config or EstimateConfig()
        self._probe = probe or PsutilProbe()
        self._clock = clock
        self._domains = _domains(self.config)
        self._last_t = clock()
        self._last_busy = self._probe.busy_cpu_s()
        self._cpus = max(self._probe.cpu_count(), 1)
        self._busy_s = 0.0  # u integrated since the first read, at most the time elapsed
        self._elapsed_s = 0.0
        self._cpu_j = 0.0
        self._dram_j = 0.0
        # Installed memory does not change during a run: read it once (~90 us).
        self._installed_gib = (
            self._probe.memory_bytes("total") / BYTES_PER_GIB
            if self.config.ram == "total"
            else None
        )

    def domains(self) -> tuple[Domain, ...]:
        return self._domains

    def read(self) -> Reading:
        now = self._clock()
        dt = max(now - self._last_t, 0.0)
        cfg = self.config
        energy: dict[str, float] = {}
        if "cpu" in cfg.parts:
            busy = self._probe.busy_cpu_s()
            self._elapsed_s += dt
            counted = self._busy_s + max(busy - self._last_busy, 0.0) / self._cpus
            busy_s = min(counted, self._elapsed_s) - min(self._busy_s, self._elapsed_s - dt)
            self._busy_s, self._last_busy = counted, busy
            idle = cfg.idle_fraction
            self._cpu_j += cfg.tdp_w * (idle * dt + (1.0 - idle) * busy_s)
            energy["cpu"] = self._cpu_j
        if "dram" in cfg.parts:
            gib = self._installed_gib
            if gib is None:
                gib = self._probe.memory_bytes(cfg.ram) / BYTES_PER_GIB
            self._dram_j += cfg.ram_w_per_gb * gib * dt
            energy["dram"] = self._dram_j
        self._last_t = now
        return Reading(now, energy)

    def close(self) -> None:
        """Nothing to release."""


def _domains(cfg: EstimateConfig) -> tuple[Domain, ...]:
    found: list[Domain] = []
    if "cpu" in cfg.parts:
        found.append(
            Domain(
                name="cpu",
                kind="estimated",
                source="estimate",
                method="utilization-model",
                detail=(
                    f"all logical CPUs, tdp_w={cfg.tdp_w:g}, idle_fraction={cfg.idle_fraction:g}"
                ),
            )
        )
    if "dram" in cfg.parts:
        found.append(
            Domain(
                name="dram",
                kind="estimated",
                source="estimate",
                method="memory-model",
                detail=f"{cfg.ram} memory x {cfg.ram_w_per_gb:g} W/GiB",
            )
        )
    return tuple(found)


def parse_parts(text: str) -> tuple[Part, ...]:
    """``"cpu+dram"`` -> ``("cpu", "dram")``; validation happens in EstimateConfig."""
    parts: Sequence[str] = [p.strip() for p in text.split("+") if p.strip()]
    return tuple(parts)  # type: ignore[arg-type]
