"""Fakes for testing code that uses green_callbacks, on machines without sensors.

Each fake is named as one. They imitate an interface, never a result:
``FakeClock`` stands in for the monotonic clock, ``FakeMeter`` for a sensor whose
readings a test scripts, ``FakePowercapTree`` for the Linux powercap sysfs folder
that :class:`~green_callbacks.meters.RaplMeter` reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from green_callbacks.errors import ConfigError, MeterReadError
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Domain, Kind, Reading


class FakeClock:
    """A clock that moves only when told; pass ``clock`` and ``sleep`` to the tracker.

    Example:
        >>> clock = FakeClock()
        >>> clock.sleep(1.5); clock()
        1.5
    """

    def __init__(self, start: float = 0.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ConfigError(f"a monotonic clock cannot go back; got {seconds} s")
        self.now += seconds

    sleep = advance


class FakeMeter:
    """A meter whose power per domain a test sets; energy integrates on the clock.

    Args:
        power_w: domain name -> power. Units: W. Change it with :meth:`set_power`.
        clock: the clock to integrate on (a :class:`FakeClock` in tests).
        kind: provenance label of the fake figures.
        fail_after: raise :class:`MeterReadError` from the n-th read on (1-based).
    """

    name = "fake"

    def __init__(
        self,
        power_w: Mapping[str, float],
        *,
        clock: Clock = DEFAULT_CLOCK,
        kind: Kind = "measured",
        fail_after: int | None = None,
        max_poll_interval_s: float | None = None,
    ):
        self._clock = clock
        self._power = dict(power_w)
        self._energy = dict.fromkeys(self._power, 0.0)
        self._last_t = clock()
        self._kind = kind
        self._fail_after = fail_after
        self.reads = 0
        self.closed = False
        self.max_poll_interval_s = max_poll_interval_s

    def domains(self) -> tuple[Domain, ...]:
        return tuple(
            Domain(
                name=n, kind=self._kind, source="fake", method="scripted-power", detail="FakeMeter"
            )
            for n in self._power
        )

    def set_power(self, **power_w: float) -> None:
        """Integrate up to now at the old power, then switch. Units: W."""
        self._integrate()
        self._power.update(power_w)

    def _integrate(self) -> None:
        now = self._clock()
        for name, watts in self._power.items():
            self._energy[name] += watts * (now - self._last_t)
        self._last_t = now

    def read(self) -> Reading:
        self.reads += 1
        if self._fail_after is not None and self.reads >= self._fail_after:
            raise MeterReadError("FakeMeter scripted failure")
        self._integrate()
        return Reading(self._last_t, dict(self._energy))

    def close(self) -> None:
        self.closed = True


class FakePowercapTree:
    """A powercap sysfs tree in a folder, laid out as the kernel lays it out.

    Example:
        >>> import tempfile
        >>> tree = FakePowercapTree(tempfile.mkdtemp())
        >>> pkg = tree.add_zone("intel-rapl:0", "package-0", max_range_uj=1000)
        >>> tree.set_energy("intel-rapl:0", 250)
        >>> (pkg / "energy_uj").read_text()
        '250\\n'
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._paths: dict[str, Path] = {}

    def add_zone(
        self, zone_id: str, name: str, *, max_range_uj: int = 262_143_328_850, energy_uj: int = 0
    ) -> Path:
        """Add ``intel-rapl:N`` (top level) or ``intel-rapl:N:M`` (nested in its package)."""
        parent_id = zone_id.rsplit(":", 1)[0] if zone_id.count(":") == 2 else None
        parent = self._paths[parent_id] if parent_id else self.root
        path = parent / zone_id
        path.mkdir()
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        self._paths[zone_id] = path
        return path

    def set_energy(self, zone_id: str, energy_uj: int) -> None:
        """Set a zone's counter (as the hardware would advance it).

        Written to a temp file and renamed, so a concurrent reader never sees a
        half-written value (sysfs reads are atomic too).
        """
        path = self._paths[zone_id] / "energy_uj"
        temp = path.with_name("energy_uj.tmp")
        temp.write_text(f"{energy_uj}\n")
        os.replace(temp, path)

    def add_energy(self, zone_id: str, delta_uj: int) -> None:
        """Advance a zone's counter by ``delta_uj``, wrapping at its range."""
        path = self._paths[zone_id]
        current = int((path / "energy_uj").read_text())
        limit = int((path / "max_energy_range_uj").read_text())
        self.set_energy(zone_id, (current + delta_uj) % limit)

    def energy_path(self, zone_id: str) -> Path:
        return self._paths[zone_id] / "energy_uj"


def constant_power_trace(folder: Path, power_w: float, *, name: str = "constant.csv") -> str:
    """Write a one-hour replay trace of constant power; returns its spec ``replay:PATH``.

    With it, any window's expected energy is ``power_w`` x its duration, so
    tests know the right figure without a sensor.
    """
    path = Path(folder) / name
    path.write_text(f"time_s,power_w\n0,{power_w}\n3600,{power_w}\n", encoding="utf-8")
    return f"replay:{path}"


CallbackT = TypeVar("CallbackT")


def fake_metered(
    callback_class: Callable[..., CallbackT], power_w: float = 100.0, **kwargs: Any
) -> tuple[CallbackT, FakeClock]:
    """A framework's EnergyCallback metering a FakeMeter of ``power_w`` on a FakeClock.

    The whole session runs on the fake clock (no sampler thread), so energy is
    exactly ``power_w`` x the seconds the test advances the clock, for epoch
    figures and interpolated checks (``tracker.peek``) alike.

    Returns:
        The callback (``callback_class(meters=..., **kwargs)``) and its clock.
    """
    clock = FakeClock()
    callback = callback_class(meters=FakeMeter({"gpu:0": power_w}, clock=clock), **kwargs)
    callback._session_options = {  # type: ignore[attr-defined]
        "clock": clock, "sleep": clock.sleep, "sample_interval_s": None,
    }  # fmt: skip
    return callback, clock
