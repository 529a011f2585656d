"""Play back a recorded or synthetic power trace as if it were a sensor.

For tests, demos and simulations. A trace is a CSV file whose first column is
``time_s`` and whose other columns are either power (name ending ``_w``) or
cumulative energy (name ending ``_j``) of one domain each::

    time_s,power_w          # one domain, called "replay"
    0.0,100
    1.0,300

    time_s,gpu:0_w,cpu_j    # several domains: gpu:0 (power), cpu (cumulative J)

Playback starts at the meter's first ``read()``: trace time 0 (the first row,
whatever its time) is that instant. Power is linear between rows, so the
energy of any interval is the exact integral of that piecewise-linear curve;
cumulative energy is interpolated linearly. After the last row, power stays
at its last value (for energy columns: the slope of the last interval).
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from green_callbacks.errors import MeterSpecError
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Domain, Reading

_SINGLE = {"power_w": ("replay", "power"), "energy_j": ("replay", "energy")}


@dataclass(frozen=True)
class _Series:
    """Cumulative energy at the trace's rows, and power at each row."""

    times: tuple[float, ...]
    energy: tuple[float, ...]
    power: tuple[float, ...]
    linear_power: bool

    def energy_at(self, t: float) -> float:
        times = self.times
        if t <= 0.0:
            return 0.0
        if t >= times[-1]:
            return self.energy[-1] + self.power[-1] * (t - times[-1])
        i = bisect.bisect_right(times, t) - 1
        tau = t - times[i]
        dt = times[i + 1] - times[i]
        if self.linear_power:
            slope = (self.power[i + 1] - self.power[i]) / dt
            return self.energy[i] + self.power[i] * tau + 0.5 * slope * tau * tau
        return self.energy[i] + (self.energy[i + 1] - self.energy[i]) * tau / dt


def _from_power(times: Sequence[float], watts: Sequence[float]) -> _Series:
    energy = [0.0]
    for i in range(1, len(times)):
        energy.append(energy[-1] + 0.5 * (watts[i] + watts[i - 1]) * (times[i] - times[i - 1]))
    return _Series(tuple(times), tuple(energy), tuple(watts), linear_power=True)


def _from_energy(times: Sequence[float], joules: Sequence[float]) -> _Series:
    energy = [j - joules[0] for j in joules]
    slopes = [
        (energy[i + 1] - energy[i]) / (times[i + 1] - times[i]) for i in range(len(times) - 1)
    ]
    return _Series(tuple(times), tuple(energy), (*slopes, slopes[-1]), linear_power=False)


class ReplayMeter:
    """A meter that plays back a trace; its figures are labelled ``replayed``.

    Args:
        series: domain name -> (times in s, values), with ``kind`` "power"
            (W) or "energy" (cumulative J); see :meth:`from_csv` for files.
        clock: monotonic clock; playback follows it.
        origin: text for the provenance label (the file path).
    """

    name = "replay"
    max_poll_interval_s: float | None = None

    def __init__(
        self,
        series: dict[str, tuple[str, Sequence[float], Sequence[float]]],
        *,
        clock: Clock = DEFAULT_CLOCK,
        origin: str = "in-memory trace",
    ):
        self._clock = clock
        self._series: dict[str, _Series] = {}
        for domain, (kind, times, values) in series.items():
            self._series[domain] = _validated(domain, kind, times, values, origin)
        self._domains = tuple(
            Domain(name=d, kind="replayed", source="replay", method="trace", detail=origin)
            for d in self._series
        )
        self._t0: float | None = None

    @classmethod
    def from_power(
        cls, times_s: Sequence[float], power_w: Sequence[float], *, clock: Clock = DEFAULT_CLOCK
    ) -> ReplayMeter:
        """A one-domain (``replay``) meter from power samples. Units: s, W."""
        return cls({"replay": ("power", times_s, power_w)}, clock=clock)

    @classmethod
    def from_csv(cls, path: str | Path, *, clock: Clock = DEFAULT_CLOCK) -> ReplayMeter:
        """Load a trace file (see the module docstring for the format)."""
        return cls(_load_csv(Path(path)), clock=clock, origin=f"trace {path}")

    def domains(self) -> tuple[Domain, ...]:
        return self._domains

    def read(self) -> Reading:
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        t = now - self._t0
        return Reading(now, {d: s.energy_at(t) for d, s in self._series.items()})

    def close(self) -> None:
        """Nothing to release."""


def _validated(
    domain: str, kind: str, times: Sequence[float], values: Sequence[float], origin: str
) -> _Series:
    where = f"replay {origin}, column {domain!r}"
    if len(times) != len(values) or len(times) < 2:
        raise MeterSpecError(
            f"{where}: needs at least two rows of time and value, got {len(times)}"
        )
    for label, series in (("time_s", times), ("value", values)):
        bad = next((i for i, v in enumerate(series) if not math.isfinite(v)), None)
        if bad is not None:
            raise MeterSpecError(
                f"{where}: row {bad + 1} has {label} {series[bad]}; every value must be a "
                "finite number"
            )
    if any(b <= a for a, b in pairwise(times)):
        raise MeterSpecError(f"{where}: time_s must strictly increase from row to row")
    shifted = [t - times[0] for t in times]
    if kind == "power":
        if min(values) < 0:
            raise MeterSpecError(f"{where}: power must be >= 0 W, got {min(values)}")
        ceiling = Domain(domain, "replayed", "replay", "trace").max_power_w
        if max(values) > ceiling:
            raise MeterSpecError(
                f"{where}: power {max(values)} W is more than any {domain!r} domain draws "
                f"(ceiling {ceiling:g} W, docs/meters.md); is the column in mW or uW?"
            )
        return _from_power(shifted, values)
    if kind == "energy":
        if any(b < a for a, b in pairwise(values)):
            raise MeterSpecError(f"{where}: cumulative energy must never decrease")
        return _from_energy(shifted, values)
    raise MeterSpecError(f"{where}: kind must be 'power' or 'energy', got {kind!r}")


def _column_kind(header: str) -> tuple[str, str]:
    if header in _SINGLE:
        return _SINGLE[header]
    if header.endswith("_w") and len(header) > 2:
        return header[:-2], "power"
    if header.endswith("_j") and len(header) > 2:
        return header[:-2], "energy"
    raise MeterSpecError(
        f"replay trace column {header!r}: name a power column '<domain>_w' (or 'power_w') "
        "or a cumulative-energy column '<domain>_j' (or 'energy_j')"
    )


def _load_csv(path: Path) -> dict[str, tuple[str, Sequence[float], Sequence[float]]]:
    try:  # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the header
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
    except OSError as err:
        raise MeterSpecError(f"cannot read replay trace {path}: {err}") from err
    except (UnicodeDecodeError, csv.Error) as err:
        raise MeterSpecError(
            f"replay trace {path} is not a text CSV file ({err}); "
            "write it as UTF-8 text with a header such as 'time_s,power_w'"
        ) from err
    if not rows or rows[0][0].strip() != "time_s" or len(rows[0]) < 2:
        raise MeterSpecError(
            f"replay trace {path}: the first line must be a header 'time_s,power_w' "
            "(or 'time_s,energy_j', or several '<domain>_w' / '<domain>_j' columns)"
        )
    header = [h.strip() for h in rows[0]]
    try:
        table = [[float(cell) for cell in row] for row in rows[1:]]
    except ValueError as err:
        raise MeterSpecError(f"replay trace {path}: non-numeric value ({err})") from err
    if any(len(row) != len(header) for row in table):
        raise MeterSpecError(f"replay trace {path}: every row needs {len(header)} values")
    times = [row[0] for row in table]
    series: dict[str, tuple[str, Sequence[float], Sequence[float]]] = {}
    for col, name in enumerate(header[1:], start=1):
        domain, kind = _column_kind(name)
        if domain in series:
            raise MeterSpecError(
                f"replay trace {path}: two columns for domain {domain!r} ({name!r} and one "
                "before it); give each domain one column, power '_w' or energy '_j'"
            )
        series[domain] = (kind, times, [row[col] for row in table])
    return series
