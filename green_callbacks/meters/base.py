"""The one protocol every energy source implements, and the records it returns.

A meter reports *cumulative* joules per domain since it was opened; the values
only go up. The core turns two readings into the energy of a window (end minus
start), whatever the backend, so a meter never has to know about windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Clock = Callable[[], float]
"""A monotonic clock in seconds; ``time.monotonic`` unless a test injects one."""

DEFAULT_CLOCK: Clock = time.monotonic

Kind = Literal["measured", "estimated", "replayed"]
"""Where a figure comes from.

- ``measured``: a hardware sensor read during this run (an energy counter, or a
  power sensor sampled and integrated).
- ``estimated``: a model (CPU utilisation x TDP, RAM size x W/GB), not a sensor.
- ``replayed``: a recorded or synthetic power trace played back; neither a
  measurement of this run nor a model of it.
"""

KINDS: tuple[Kind, ...] = ("measured", "estimated", "replayed")

DEVICE_PREFIXES = ("gpu",)
"""Domain name prefixes of per-device domains (``gpu:0``); every other domain is host-level."""

MAX_POWER_W: Mapping[str, float] = {"gpu": 3000.0, "cpu": 2000.0, "dram": 1000.0, "psys": 10000.0}
"""The most power a domain can plausibly draw, by name prefix (``gpu:0`` -> ``gpu``). Units: W.

Two to four times the largest parts made today (a 1.4 kW accelerator, a 500 W
CPU package, a socket of DRAM, a whole node), so that only impossible
readings exceed it: a counter misread as a wrap, a corrupt trace. Domains
with other names get :data:`DEFAULT_MAX_POWER_W`.
"""

HELD_POWER = "held-power"
"""The method of a domain whose source failed: estimated at the mean power it measured before."""

DEFAULT_MAX_POWER_W = 10000.0
"""The ceiling of a domain whose name has no entry in :data:`MAX_POWER_W`. Units: W."""


@dataclass(frozen=True)
class Domain:
    """One thing a meter reports energy for, with the provenance of its figures.

    Attributes:
        name: stable domain key, e.g. ``"gpu:0"``, ``"cpu:0"``, ``"dram:0"``,
            ``"cpu:0/core"``, ``"psys"``.
        kind: measured, estimated or replayed.
        source: the meter that produced it (``"nvml"``, ``"rapl"``, ...).
        method: how: ``"energy-counter"``, ``"power-integration"``,
            ``"utilization-model"``, ``"memory-model"``, ``"trace"``.
        part_of: the domain that already contains this one (``cpu:0/core`` is
            part of ``cpu:0``; packages are part of ``psys``), or None. Only
            domains with ``part_of=None`` add up to a total, so nothing is
            counted twice.
        detail: free text for people (device name, zone path, constants).
    """

    name: str
    kind: Kind
    source: str
    method: str
    part_of: str | None = None
    detail: str = ""

    @property
    def device_index(self) -> int | None:
        """The accelerator this domain belongs to (``gpu:1`` -> 1); None for host-level domains.

        Host-level domains (CPU packages, DRAM, psys, the CPU and RAM estimate)
        are shared by every process on the machine; a device domain belongs to
        the process that drives that device.
        """
        prefix, sep, index = self.name.partition(":")
        if sep and prefix in DEVICE_PREFIXES and index.isdigit():
            return int(index)
        return None

    @property
    def max_power_w(self) -> float:
        """The most power this domain can plausibly draw (:data:`MAX_POWER_W`). Units: W."""
        prefix = self.name.split(":", 1)[0].split("/", 1)[0]
        return MAX_POWER_W.get(prefix, DEFAULT_MAX_POWER_W)

    def label(self) -> str:
        """Short provenance label, e.g. ``"measured (nvml energy-counter)"``."""
        return f"{self.kind} ({self.source} {self.method})"

    def to_dict(self) -> dict[str, str | None]:
        """Plain-JSON form."""
        return {
            "domain": self.name,
            "kind": self.kind,
            "source": self.source,
            "method": self.method,
            "part_of": self.part_of,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Reading:
    """Cumulative energy per domain at one instant.

    Attributes:
        timestamp_s: clock time of the reading. Units: s (same clock as the tracker).
        energy_j: cumulative energy since the meter was opened, per domain
            name, in the order of :meth:`Meter.domains`. Units: J.
    """

    timestamp_s: float
    energy_j: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Meter(Protocol):
    """A source of cumulative energy readings.

    Attributes:
        name: short source name (``"rapl"``, ``"nvml"``...).
        max_poll_interval_s: the longest gap between two ``read()`` calls for
            the figures to stay right (a counter must not wrap twice unseen; a
            power sensor is integrated between reads), or None if any gap works.
    """

    name: str
    max_poll_interval_s: float | None

    def domains(self) -> tuple[Domain, ...]:
        """The domains this meter reports, with their provenance."""
        ...

    def read(self) -> Reading:
        """Cumulative joules per domain since the meter was opened.

        Raises:
            MeterReadError: the sensor failed; the caller drops the meter.
        """
        ...

    def close(self) -> None:
        """Release handles. Idempotent."""
        ...
