"""RAPL energy counters through the Linux powercap tree (Intel and AMD).

The kernel exposes each RAPL zone as a folder with ``name``, ``energy_uj`` (a
counter in microjoules that wraps at ``max_energy_range_uj``) and nested
sub-zones. Layout, as on a two-socket server::

    /sys/class/powercap/intel-rapl:0/            name=package-0
    /sys/class/powercap/intel-rapl:0/intel-rapl:0:0/   name=core
    /sys/class/powercap/intel-rapl:0/intel-rapl:0:1/   name=dram
    /sys/class/powercap/intel-rapl:1/            name=package-1 (or psys)

AMD processors use the same ``intel-rapl`` control type. The ``intel-rapl-mmio``
zones duplicate the package counter and are skipped.

Domains: ``package-N`` -> ``cpu:N``; its ``core``/``uncore`` sub-zones ->
``cpu:N/core`` (part of ``cpu:N``); ``dram`` -> ``dram:N``; ``psys`` -> ``psys``.
When ``psys`` exists it covers the whole platform, so the packages and DRAM are
marked as its parts and only psys adds to the total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from green_callbacks.errors import (
    ImplausibleReadingError,
    MeterPermissionError,
    MeterReadError,
    MeterUnavailableError,
)
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Domain, Reading

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
UJ_PER_J = 1_000_000

# The highest power one zone is assumed to draw, used only to derive how often
# the counter must be read so that it never wraps twice between two reads.
_ASSUMED_MAX_ZONE_POWER_W = 1000.0
_ZONE_DIR = re.compile(r"^(intel|amd)-rapl:(\d+)(?::(\d+))?$")

PERMISSION_FIX = (
    "Since Linux 5.10 (CVE-2020-8694) energy_uj is readable by root only. To let this "
    "user read it: 'sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj' (until reboot), or a udev rule / "
    "systemd-tmpfiles entry that does the same at boot, or run as root. In a "
    "container, also mount /sys/class/powercap read-only."
)


@dataclass
class _Zone:
    domain: Domain
    energy_path: Path
    max_range_uj: int
    last_uj: int
    total_uj: int = 0


class RaplMeter:
    """Cumulative RAPL energy per zone, unwrapping counter wraparound.

    Args:
        root: the powercap folder; tests and containers point it elsewhere.
        clock: monotonic clock for reading timestamps.

    Raises:
        MeterUnavailableError: no RAPL zone under ``root``.
        MeterPermissionError: a zone's ``energy_uj`` cannot be read; the message
            says how to fix it.

    A counter wraps after ``max_energy_range_uj`` (about 262 kJ for a package,
    minutes at full load). Each read adds the delta since the previous read,
    adding one range when the counter went down, so the figures stay right for
    any window as long as reads come at least every ``max_poll_interval_s``;
    the tracker's sampler thread does that.
    """

    name = "rapl"

    def __init__(self, root: str | Path = DEFAULT_POWERCAP_ROOT, *, clock: Clock = DEFAULT_CLOCK):
        self.root = Path(root)
        self._clock = clock
        self._zones = _discover_zones(self.root)
        shortest = min(z.max_range_uj for z in self._zones) / UJ_PER_J
        self.max_poll_interval_s: float | None = shortest / _ASSUMED_MAX_ZONE_POWER_W

    def domains(self) -> tuple[Domain, ...]:
        return tuple(z.domain for z in self._zones)

    def read(self) -> Reading:
        now = self._clock()
        energy: dict[str, float] = {}
        raws = [_read_counter(zone.energy_path) for zone in self._zones]
        for zone, raw in zip(self._zones, raws):  # all checked before any zone moves on
            if not 0 <= raw <= zone.max_range_uj:
                raise ImplausibleReadingError(
                    f"RAPL counter {zone.energy_path} read {raw} uJ, outside its range "
                    f"0..{zone.max_range_uj} (max_energy_range_uj); the reading is skipped"
                )
        for zone, raw in zip(self._zones, raws):
            delta = raw - zone.last_uj
            if delta < 0:  # the counter wrapped once since the last read
                delta += zone.max_range_uj
            zone.total_uj += delta
            zone.last_uj = raw
            energy[zone.domain.name] = zone.total_uj / UJ_PER_J
        return Reading(now, energy)

    def close(self) -> None:
        """Nothing to release: files are opened per read."""


def _read_counter(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as err:
        raise MeterPermissionError(
            f"cannot read RAPL counter {path}: {err}. {PERMISSION_FIX}"
        ) from err
    except (OSError, ValueError) as err:
        raise MeterReadError(f"cannot read RAPL counter {path}: {err}") from err


def _zone_dirs(root: Path) -> list[Path]:
    """Zone folders directly under root and nested one level (deduplicated by name)."""
    found: dict[str, Path] = {}
    candidates = list(root.iterdir())
    for top in candidates:
        if _ZONE_DIR.match(top.name) and top.is_dir():
            candidates.extend(p for p in top.iterdir() if _ZONE_DIR.match(p.name))
    for path in candidates:
        if _ZONE_DIR.match(path.name) and path.is_dir():
            found.setdefault(path.name, path)
    return [found[k] for k in sorted(found, key=_zone_sort_key)]


def _zone_sort_key(dirname: str) -> tuple[int, int]:
    match = _ZONE_DIR.match(dirname)
    assert match is not None
    return int(match.group(2)), int(match.group(3) or -1)


def _discover_zones(root: Path) -> list[_Zone]:
    if not root.is_dir():
        raise MeterUnavailableError(
            f"no powercap folder at {root}: this kernel or container exposes no RAPL "
            "counters. On bare-metal Linux load the intel_rapl_common module; in a "
            "container mount /sys/class/powercap; or use meter 'estimate'."
        )
    dirs = _zone_dirs(root)
    if not dirs:
        raise MeterUnavailableError(
            f"no RAPL zone (intel-rapl:N) under {root}; the CPU or kernel has no RAPL "
            "support. Use meter 'estimate' instead."
        )
    raw = [(path, (path / "name").read_text().strip()) for path in dirs]
    has_psys = any(name == "psys" for _, name in raw)
    zones = []
    for path, zone_name in raw:
        domain = _domain_for(path, zone_name, has_psys)
        energy_path = path / "energy_uj"
        max_range = int((path / "max_energy_range_uj").read_text().strip())
        zones.append(_Zone(domain, energy_path, max_range, last_uj=_read_counter(energy_path)))
    return zones


def _domain_for(path: Path, zone_name: str, has_psys: bool) -> Domain:
    match = _ZONE_DIR.match(path.name)
    assert match is not None
    socket = match.group(2)
    top_level = match.group(3) is None
    container = "psys" if has_psys else None
    if zone_name == "psys":
        name, part_of = "psys", None
    elif zone_name.startswith("package-"):
        name, part_of = f"cpu:{zone_name.removeprefix('package-')}", container
    elif zone_name == "dram":
        name, part_of = f"dram:{socket}", container
    elif top_level:
        name, part_of = f"{zone_name}:{socket}", container
    else:
        name, part_of = f"cpu:{socket}/{zone_name}", f"cpu:{socket}"
    return Domain(
        name=name,
        kind="measured",
        source="rapl",
        method="energy-counter",
        part_of=part_of,
        detail=f"powercap zone {path}",
    )
