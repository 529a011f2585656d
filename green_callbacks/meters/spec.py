"""Meter spec strings, the one way sources are chosen in the API and the CLI.

=============================  =============================================
spec                           meaning
=============================  =============================================
``auto``                       every real sensor present, estimate the rest
``nvml``                       NVIDIA GPUs through NVML
``rapl`` / ``rapl:/path``      RAPL counters under /sys/class/powercap or a path
``pyrapl``                     RAPL through pyRAPL
``estimate[:k=v,...]``         the estimate; keys tdp_w, idle_fraction,
                               ram_w_per_gb, ram (total|used), parts (cpu+dram)
``replay:/path/trace.csv``     play back a recorded power trace
=============================  =============================================

A meter named explicitly fails loudly if it cannot work; ``auto`` falls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from green_callbacks.errors import MeterSpecError
from green_callbacks.meters.auto import Selection, detect
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Meter
from green_callbacks.meters.estimate import EstimateConfig, EstimateMeter, parse_parts
from green_callbacks.meters.nvml import NvmlMeter
from green_callbacks.meters.pyrapl import PyRaplMeter
from green_callbacks.meters.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter
from green_callbacks.meters.replay import ReplayMeter

SPEC_FORMS = (
    "auto",
    "nvml",
    "rapl",
    "rapl:/path/to/powercap",
    "pyrapl",
    "estimate",
    "estimate:tdp_w=65,ram=used",
    "replay:/path/to/trace.csv",
)
_NO_ARGUMENT = {"auto", "nvml", "pyrapl"}
_ESTIMATE_KEYS = {f.name for f in fields(EstimateConfig)}

MeterLike = str | Meter


@dataclass(frozen=True)
class MeterSpec:
    """A parsed spec: the source name and its argument (path or options).

    Attributes:
        source: ``nvml``, ``rapl``, ``pyrapl``, ``estimate``, ``replay`` or ``auto``.
        argument: what follows the colon (a folder, a file, options), or None.
    """

    source: str
    argument: str | None = None


def parse_spec(text: str) -> MeterSpec:
    """Parse ``"rapl:/sys/class/powercap"`` into ``MeterSpec("rapl", "/sys/...")``.

    Args:
        text: the spec string (docs/meters.md).

    Raises:
        MeterSpecError: unknown source, or an argument where none is allowed
            or missing where one is needed.
    """
    if not isinstance(text, str) or not text.strip():
        raise MeterSpecError(
            f"meter spec must be a non-empty string, got {text!r}; use one of {_forms()}"
        )
    source, sep, argument = text.strip().partition(":")
    source = source.strip().lower()
    if source not in _NO_ARGUMENT | {"rapl", "estimate", "replay"}:
        raise MeterSpecError(f"unknown meter {source!r} in spec {text!r}; use one of {_forms()}")
    if sep and not argument.strip():
        raise MeterSpecError(
            f"meter spec {text!r} ends with ':' but gives no argument; e.g. {_forms()}"
        )
    if argument and source in _NO_ARGUMENT:
        raise MeterSpecError(
            f"meter {source!r} takes no argument, got {text!r}; write just {source!r}"
        )
    if source == "replay" and not argument:
        raise MeterSpecError("meter 'replay' needs a trace file: 'replay:/path/to/trace.csv'")
    return MeterSpec(source, argument.strip() or None)


def build_meter(spec: MeterSpec, *, clock: Clock = DEFAULT_CLOCK) -> Meter:
    """Open the meter a spec names; raises if it cannot work (explicit choice).

    Args:
        spec: what :func:`parse_spec` returned.
        clock: the monotonic clock its readings are timed on.
    """
    if spec.source == "nvml":
        return NvmlMeter(clock=clock)
    if spec.source == "rapl":
        return RaplMeter(spec.argument or DEFAULT_POWERCAP_ROOT, clock=clock)
    if spec.source == "pyrapl":
        return PyRaplMeter(clock=clock)
    if spec.source == "estimate":
        return EstimateMeter(_estimate_config(spec.argument), clock=clock)
    if spec.source == "replay":
        assert spec.argument is not None
        return ReplayMeter.from_csv(Path(spec.argument), clock=clock)
    raise MeterSpecError(f"meter {spec.source!r} cannot be built directly; use one of {_forms()}")


def check_meters(meters: object) -> list[MeterLike]:
    """Check what ``meters=`` names without opening anything: specs parse, objects are meters.

    Called when a callback is built, so a wrong value fails there, not when
    training starts. Returns the items as a list (one spec or meter is a list of one).
    """
    items: list[Any] = (
        [meters] if isinstance(meters, str) or not isinstance(meters, Sequence) else list(meters)
    )
    if not items:
        raise MeterSpecError(f"no meter given; pass 'auto' or a list of specs such as {_forms()}")
    for item in items:
        if isinstance(item, str):
            parse_spec(item)
        elif not all(callable(getattr(item, name, None)) for name in ("read", "domains", "close")):
            raise MeterSpecError(
                f"meters= takes 'auto', a spec string such as {_forms()}, or a meter object "
                f"(with read(), domains() and close()); got {item!r}"
            )
    return items


def open_meters(
    meters: MeterLike | Sequence[MeterLike] = "auto", *, clock: Clock = DEFAULT_CLOCK
) -> Selection:
    """Resolve specs and meter objects into open meters, with the explanation.

    Args:
        meters: ``"auto"``, one spec, a meter object, or a list of those.
        clock: clock handed to every meter that is built here.
    """
    items = check_meters(meters)
    selection = Selection()
    try:
        for item in items:
            if not isinstance(item, str):
                selection.meters.append(item)
                continue
            spec = parse_spec(item)
            if spec.source == "auto":
                found = detect(clock=clock)
                selection.meters.extend(found.meters)
                selection.findings.extend(found.findings)
            else:
                selection.meters.append(build_meter(spec, clock=clock))
        _check_unique_domains(selection.meters)
    except BaseException:
        for meter in selection.meters:
            meter.close()
        raise
    return selection


def _estimate_config(argument: str | None) -> EstimateConfig:
    if not argument:
        return EstimateConfig()
    values: dict[str, object] = {}
    for item in argument.split(","):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or key not in _ESTIMATE_KEYS:
            raise MeterSpecError(
                f"estimate option {item!r} is not key=value with key in {sorted(_ESTIMATE_KEYS)}; "
                "e.g. 'estimate:tdp_w=65,ram=used'"
            )
        values[key] = _estimate_value(key, value)
    return EstimateConfig(**values)  # type: ignore[arg-type]


def _estimate_value(key: str, value: str) -> object:
    if key == "parts":
        return parse_parts(value)
    if key == "ram":
        return value
    try:
        return float(value)
    except ValueError:
        raise MeterSpecError(f"estimate option {key} needs a number, got {value!r}") from None


def _check_unique_domains(meters: Sequence[Meter]) -> None:
    owner: dict[str, str] = {}
    for meter in meters:
        for domain in meter.domains():
            if domain.name in owner:
                raise MeterSpecError(
                    f"domain {domain.name!r} is reported by both {owner[domain.name]!r} and "
                    f"{meter.name!r}; it would be counted twice. Choose one of them."
                )
            owner[domain.name] = meter.name


def _forms() -> str:
    return ", ".join(repr(f) for f in SPEC_FORMS)
