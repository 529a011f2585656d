"""Pick every real sensor present, estimate what none covers, and say why.

``auto`` degrades quietly: a missing sensor is recorded with the reason and the
fix (shown by ``green-callbacks meters`` and kept in run summaries), and one
warning is issued when any figure has to be estimated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from green_callbacks.errors import (
    MeterPermissionError,
    MeterUnavailableError,
    MissingExtraError,
    warn,
)
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Meter
from green_callbacks.meters.estimate import EstimateConfig, EstimateMeter, Part
from green_callbacks.meters.nvml import NvmlMeter
from green_callbacks.meters.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter


@dataclass(frozen=True)
class Finding:
    """What detection found for one source.

    Attributes:
        source: meter name (``nvml``, ``rapl``, ``pyrapl``, ``estimate``).
        chosen: whether the source is used.
        reason: why it is used or not.
        fix: how to enable it, when it is missing and can be enabled.
    """

    source: str
    chosen: bool
    reason: str
    fix: str = ""


@dataclass
class Selection:
    """The meters chosen, and the findings that explain the choice.

    Attributes:
        meters: the open meters, one per source used.
        findings: one per source looked at: chosen or not, why, and the fix.
    """

    meters: list[Meter] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def explain(self) -> str:
        """Human-readable explanation, one line per source (plus fixes)."""
        lines = []
        for f in self.findings:
            mark = "chosen " if f.chosen else "not used"
            lines.append(f"[{mark}] {f.source}: {f.reason}")
            if f.fix:
                lines.append(f"           fix: {f.fix}")
        return "\n".join(lines)


POWERCAP_ROOT_ENV = "GREEN_CALLBACKS_POWERCAP_ROOT"


def detect(*, powercap_root: str | Path | None = None, clock: Clock = DEFAULT_CLOCK) -> Selection:
    """Open every real sensor on this machine; estimate CPU and DRAM where none measures them.

    Args:
        powercap_root: where to look for RAPL; default ``$GREEN_CALLBACKS_POWERCAP_ROOT``
            or ``/sys/class/powercap`` (containers may mount it elsewhere).
        clock: clock handed to every meter.
    """
    if powercap_root is None:
        powercap_root = os.environ.get(POWERCAP_ROOT_ENV) or DEFAULT_POWERCAP_ROOT
    selection = Selection()
    _try_nvml(selection, clock)
    rapl = _try_rapl(selection, powercap_root, clock)
    selection.findings.append(
        Finding(
            "pyrapl",
            False,
            "not used by auto: meter 'rapl' reads the same counters and unwraps them",
        )
    )
    parts = _parts_to_estimate(rapl)
    if parts:
        meter = EstimateMeter(EstimateConfig(parts=parts), clock=clock)
        selection.meters.append(meter)
        what = " and ".join({"cpu": "CPU", "dram": "DRAM"}[p] for p in parts)
        selection.findings.append(
            Finding(
                "estimate", True, f"no sensor measures {what}: estimated (labelled 'estimated')"
            )
        )
        warn(
            f"no energy sensor for {what} on this machine; those figures are estimated and "
            "labelled so. Run 'green-callbacks meters' to see why and how to fix it."
        )
    else:
        selection.findings.append(
            Finding("estimate", False, "not needed: sensors cover CPU and DRAM")
        )
    return selection


def _try_nvml(selection: Selection, clock: Clock) -> None:
    try:
        meter = NvmlMeter(clock=clock)
    except ImportError as err:
        selection.findings.append(
            Finding("nvml", False, f"pynvml is not importable ({err})", "pip install nvidia-ml-py")
        )
        return
    except MeterUnavailableError as err:
        selection.findings.append(
            Finding(
                "nvml",
                False,
                str(err),
                "install the NVIDIA driver, if this machine has an NVIDIA GPU",
            )
        )
        return
    selection.meters.append(meter)
    gpus = ", ".join(f"{d.name} ({d.method})" for d in meter.domains())
    selection.findings.append(Finding("nvml", True, f"measures {gpus}"))


def _try_rapl(selection: Selection, root: str | Path, clock: Clock) -> RaplMeter | None:
    try:
        meter = RaplMeter(root, clock=clock)
    except MeterPermissionError as err:
        selection.findings.append(
            Finding("rapl", False, "RAPL counters exist but are not readable", str(err))
        )
        return None
    except (MeterUnavailableError, MissingExtraError, OSError, ValueError) as err:
        selection.findings.append(Finding("rapl", False, str(err)))
        return None
    selection.meters.append(meter)
    zones = ", ".join(d.name for d in meter.domains())
    selection.findings.append(Finding("rapl", True, f"measures {zones} from {root}"))
    return meter


def _parts_to_estimate(rapl: RaplMeter | None) -> tuple[Part, ...]:
    if rapl is None:
        return ("cpu", "dram")
    names = {d.name for d in rapl.domains()}
    if "psys" in names or any(n.startswith("dram:") for n in names):
        return ()
    return ("dram",)
