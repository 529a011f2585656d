"""Records the tracker returns: one per closed window, and the run's running aggregates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from green_callbacks.core.units import Carbon
from green_callbacks.meters.base import HELD_POWER, Domain

LEVELS = ("run", "phase", "epoch", "batch")


@dataclass(frozen=True)
class Layout:
    """What every reading of one run has in common: its domains and settings.

    Attributes:
        domains: provenance of each value, in vector order.
        top: whether each domain adds to the total (``part_of is None``).
        carbon: conversion to gCO2e, or None when no intensity was given.
    """

    domains: tuple[Domain, ...]
    top: tuple[bool, ...]
    carbon: Carbon | None = None

    def total_of(self, values: tuple[float, ...]) -> tuple[float, ...]:
        """The values that add to a total: those of top-level domains."""
        if all(self.top):
            return values
        return tuple(v for v, top in zip(values, self.top) if top)

    @classmethod
    def of(cls, domains: tuple[Domain, ...], carbon: Carbon | None) -> Layout:
        return cls(domains, tuple(d.part_of is None for d in domains), carbon)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    def kind(self) -> str:
        """``measured``, ``estimated`` or ``replayed`` if all domains agree, else ``mixed``."""
        kinds = {d.kind for d in self.domains}
        return kinds.pop() if len(kinds) == 1 else "mixed"


class WindowResult(NamedTuple):
    """Energy of one window of work (a batch, an epoch, a phase, the run).

    Immutable like the other records; a NamedTuple rather than a frozen
    dataclass because one is built at every batch boundary and a frozen
    dataclass costs ~3 us more to construct (see benchmarks/).

    Attributes:
        level: ``run``, ``phase``, ``epoch`` or ``batch``.
        name: the caller's name for it (``"train"``, ``"val"``...).
        start_s: clock time the window opened. Units: s.
        duration_s: Units: s.
        values: energy per domain, in ``layout`` order. Units: J.
        layout: domains, provenance and carbon settings.
        idle_j: idle-baseline energy over the window (baseline power times
            duration), or None without a baseline. Units: J.
        interpolated: True when a boundary was taken between sensor samples
            (batch windows) instead of from a fresh read.
        notes: what the figure lacks (a source dropped mid-run...).
    """

    level: str
    name: str
    start_s: float
    duration_s: float
    values: tuple[float, ...]
    layout: Layout
    idle_j: float | None = None
    interpolated: bool = False
    notes: tuple[str, ...] = ()

    @property
    def energy_j(self) -> float:
        """Total over top-level domains (parts are not added twice). Units: J."""
        return sum(self.layout.total_of(self.values))

    @property
    def has_held(self) -> bool:
        """Whether any domain of this window is a failed source's held estimate."""
        return any(d.method == HELD_POWER for d in self.layout.domains)

    @property
    def held_j(self) -> float:
        """The part of :attr:`energy_j` no sensor measured: failed sources held at their
        mean power (method ``held-power``, an estimate). Units: J."""
        layout = self.layout
        return sum(
            v for v, d, top in zip(self.values, layout.domains, layout.top)
            if top and d.method == HELD_POWER
        )  # fmt: skip

    @property
    def energy_by_domain(self) -> dict[str, float]:
        """Energy per domain name, parts included. Units: J."""
        return dict(zip(self.layout.names, self.values))

    @property
    def avg_power_w(self) -> float:
        """Average power over the window; 0 for an empty window. Units: W."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def above_idle_j(self) -> float | None:
        """Energy above the idle baseline; may be slightly negative from noise. Units: J."""
        return None if self.idle_j is None else self.energy_j - self.idle_j

    @property
    def carbon_g(self) -> float | None:
        """Emissions with the configured intensity and PUE. Units: gCO2e."""
        carbon = self.layout.carbon
        return None if carbon is None else carbon.grams(self.energy_j)

    @property
    def kind(self) -> str:
        """Where the figures come from: measured, estimated, replayed or mixed."""
        return self.layout.kind()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, with units in the key names."""
        return {
            "level": self.level,
            "name": self.name,
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "avg_power_w": self.avg_power_w,
            "domains": self.energy_by_domain,
            "kind": self.kind,
            "sources": [d.to_dict() for d in self.layout.domains],
            "idle_j": self.idle_j,
            "above_idle_j": self.above_idle_j,
            "carbon_g": self.carbon_g,
            "interpolated": self.interpolated,
            "notes": list(self.notes),
        }


@dataclass
class WindowStats:
    """Running aggregate of all closed windows with one level and name (bounded memory).

    Attributes:
        count: windows closed.
        energy_j: their summed energy. Units: J.
        duration_s: their summed duration. Units: s.
        min_j: smallest window energy. Units: J.
        max_j: largest window energy. Units: J.
    """

    count: int = 0
    energy_j: float = 0.0
    duration_s: float = 0.0
    min_j: float = field(default=float("inf"))
    max_j: float = field(default=float("-inf"))

    def add(self, energy_j: float, duration_s: float) -> None:
        self.count += 1
        self.energy_j += energy_j
        self.duration_s += duration_s
        if energy_j < self.min_j:
            self.min_j = energy_j
        if energy_j > self.max_j:
            self.max_j = energy_j

    @property
    def mean_j(self) -> float:
        """Mean window energy; 0 before any window. Units: J."""
        return self.energy_j / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "mean_j": self.mean_j,
            "min_j": self.min_j if self.count else None,
            "max_j": self.max_j if self.count else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowStats:
        count = int(data["count"])
        return cls(
            count=count,
            energy_j=float(data["energy_j"]),
            duration_s=float(data["duration_s"]),
            min_j=float(data["min_j"]) if count else float("inf"),
            max_j=float(data["max_j"]) if count else float("-inf"),
        )
