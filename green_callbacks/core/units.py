"""Exact unit constants and the carbon conversion."""

from __future__ import annotations

from dataclasses import dataclass

from green_callbacks.errors import CarbonConfigError, require_number

J_PER_KWH = 3_600_000


@dataclass(frozen=True)
class Carbon:
    """Grid carbon intensity and data-centre PUE.

    Attributes:
        intensity_g_per_kwh: grid emissions per kWh drawn. Units: gCO2e/kWh.
        pue: power usage effectiveness of the facility (>= 1; 1.0 for none).
    """

    intensity_g_per_kwh: float
    pue: float = 1.0

    def __post_init__(self) -> None:
        require_number("carbon_intensity_g_per_kwh", self.intensity_g_per_kwh, CarbonConfigError)
        require_number("pue", self.pue, CarbonConfigError)
        if self.intensity_g_per_kwh < 0:
            raise CarbonConfigError(
                f"carbon_intensity_g_per_kwh must be >= 0 gCO2e/kWh, got {self.intensity_g_per_kwh}"
            )
        if self.pue < 1.0:
            raise CarbonConfigError(
                f"pue must be >= 1.0 (1.0 means no facility overhead), got {self.pue}"
            )

    def grams(self, energy_j: float) -> float:
        """Emissions of ``energy_j`` drawn by the machine, facility included. Units: gCO2e."""
        return energy_j / J_PER_KWH * self.pue * self.intensity_g_per_kwh


def human_duration(seconds: float) -> str:
    """A duration for people: seconds, minutes or hours, three significant figures.

    Args:
        seconds: the duration. Units: s.

    Example:
        >>> human_duration(42.0), human_duration(600.0), human_duration(5400.0)
        ('42 s', '10 min', '1.5 h')
    """
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s"
