"""Energy sources: one small class per source behind the :class:`Meter` protocol."""

from green_callbacks.meters.auto import Finding, Selection, detect
from green_callbacks.meters.base import KINDS, Domain, Kind, Meter, Reading
from green_callbacks.meters.estimate import EstimateConfig, EstimateMeter
from green_callbacks.meters.nvml import NvmlMeter
from green_callbacks.meters.pyrapl import PyRaplMeter
from green_callbacks.meters.rapl import RaplMeter
from green_callbacks.meters.replay import ReplayMeter
from green_callbacks.meters.spec import MeterSpec, build_meter, open_meters, parse_spec

__all__ = [
    "KINDS",
    "Domain",
    "EstimateConfig",
    "EstimateMeter",
    "Finding",
    "Kind",
    "Meter",
    "MeterSpec",
    "NvmlMeter",
    "PyRaplMeter",
    "RaplMeter",
    "Reading",
    "ReplayMeter",
    "Selection",
    "build_meter",
    "detect",
    "open_meters",
    "parse_spec",
]
