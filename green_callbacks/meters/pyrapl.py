"""Adapter for users who already measure with pyRAPL (``pip install 'green-callbacks[pyrapl]'``).

pyRAPL reads the same RAPL counters as :mod:`green_callbacks.meters.rapl`, one
``Measurement`` at a time. This adapter chains measurements (end, then begin
again at every read) and adds them up. pyRAPL does not unwrap a counter that
wraps between two reads; the adapter reports such an interval as a read error
(so the tracker drops the source with a warning) rather than guess. Prefer
meter ``rapl``, which unwraps; use this one to match figures from pyRAPL.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from green_callbacks._optional import require
from green_callbacks.errors import MeterReadError, MeterUnavailableError
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Domain, Reading

UJ_PER_J = 1_000_000
# pyRAPL exposes no counter range; at 1 kW a 262 kJ package counter wraps in
# ~4 min, so a read each minute never sees two wraps unnoticed.
PYRAPL_POLL_INTERVAL_S = 60.0


def _pyrapl() -> ModuleType:
    return require("pyRAPL", "pyrapl", purpose="Meter 'pyrapl'")


class PyRaplMeter:
    """Cumulative package and DRAM energy per socket, read through pyRAPL.

    Args:
        clock: the monotonic clock its readings are timed on.

    Raises:
        MissingExtraError: pyRAPL is not installed.
        MeterUnavailableError: ``pyRAPL.setup()`` failed (no RAPL, no permission).
    """

    name = "pyrapl"
    max_poll_interval_s: float | None = PYRAPL_POLL_INTERVAL_S

    def __init__(self, *, clock: Clock = DEFAULT_CLOCK):
        lib = _pyrapl()
        self._clock = clock
        try:
            lib.setup()
            self._measurement: Any = lib.Measurement("green_callbacks")
            self._measurement.begin()
            self._measurement.end()
        except Exception as err:
            raise MeterUnavailableError(
                f"pyRAPL could not start ({type(err).__name__}: {str(err) or 'no message'}): it "
                "needs RAPL counters under /sys/class/powercap readable by this user. "
                "Run 'green-callbacks meters' for the reason and the fix."
            ) from err
        result = self._measurement.result
        self._names = _names("cpu", result.pkg) + _names("dram", result.dram)
        self._totals = [0.0] * len(self._names)
        self._domains = tuple(
            Domain(
                name=n, kind="measured", source="pyrapl", method="energy-counter", detail="pyRAPL"
            )
            for n in self._names
        )
        self._measurement.begin()

    def domains(self) -> tuple[Domain, ...]:
        return self._domains

    def read(self) -> Reading:
        now = self._clock()
        try:
            self._measurement.end()
            result = self._measurement.result
            self._measurement.begin()
        except Exception as err:
            raise MeterReadError(f"pyRAPL read failed: {type(err).__name__}: {err}") from err
        deltas = list(result.pkg or []) + list(result.dram or [])
        if any(d < 0 for d in deltas):
            raise MeterReadError(
                "pyRAPL reported a negative energy delta: a RAPL counter wrapped and pyRAPL "
                "does not unwrap it. Use meter 'rapl', which does."
            )
        for i, delta_uj in enumerate(deltas):
            self._totals[i] += delta_uj / UJ_PER_J
        return Reading(now, dict(zip(self._names, self._totals)))

    def close(self) -> None:
        """Nothing to release."""


def _names(prefix: str, per_socket: Sequence[float] | None) -> list[str]:
    return [f"{prefix}:{i}" for i in range(len(per_socket or []))]
