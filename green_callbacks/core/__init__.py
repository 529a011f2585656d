"""Framework-free core: the tracker, its records and the sampler thread."""

from green_callbacks.core.card import energy_card
from green_callbacks.core.records import LEVELS, Layout, WindowResult, WindowStats
from green_callbacks.core.tracker import EnergyTracker, Window
from green_callbacks.core.units import J_PER_KWH, Carbon

__all__ = [
    "J_PER_KWH",
    "LEVELS",
    "Carbon",
    "EnergyTracker",
    "Layout",
    "Window",
    "WindowResult",
    "WindowStats",
    "energy_card",
]
