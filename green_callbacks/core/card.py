"""An "Energy" section for a model card, from a run's summary: energy travels with the model.

Any framework: ``energy_card(callback.summary)`` gives Markdown to paste into a
README or a model card. Hugging Face: ``attach(trainer)`` adds it to the card
``trainer.create_model_card()`` (and ``push_to_hub``) writes.

Example:
    >>> gpu = {"domain": "gpu:0", "kind": "measured", "source": "nvml",
    ...        "method": "energy-counter", "detail": "NVIDIA H100"}
    >>> summary = {"notes": [], "totals": {"energy_j": 7_200_000.0, "duration_s": 3600.0,
    ...     "avg_power_w": 2000.0, "kind": "measured", "carbon_g": None, "sources": [gpu]}}
    >>> print(energy_card(summary))  # doctest: +NORMALIZE_WHITESPACE
    ## Energy
    <BLANKLINE>
    | figure | value |
    | --- | --- |
    | training energy | 2 kWh (7.2e+06 J) |
    | duration | 1 h |
    | average power | 2000 W |
    | how it was obtained | measured |
    | sources | gpu:0: measured by nvml (energy-counter), NVIDIA H100 |
    <BLANKLINE>
    Metered with green_callbacks during training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from green_callbacks.core.session import job_totals
from green_callbacks.core.units import J_PER_KWH, human_duration

KIND_WORDS = {
    "measured": "measured",
    "estimated": "estimated (a model of the hardware, not a sensor)",
    "replayed": "replayed (a recorded or synthetic power trace)",
    "mixed": "mixed (some domains measured, some estimated)",
}


def energy_card(summary: Mapping[str, Any]) -> str:
    """The summary's training energy as a Markdown "Energy" section.

    Args:
        summary: an ``EnergyCallback``'s (or ``EnergyTracker``'s) end-of-run summary.

    Returns:
        Markdown: energy (kWh and J), duration, average power, how the figures
        were obtained and from which sources and hardware, carbon when an
        intensity was given, and the run's notes (a dropped sensor...). A
        multi-process job's figures are the job's (rank 0 writes the summary).
    """
    totals = job_totals(summary)
    if not totals:
        return "## Energy\n\nNot metered: the run's summary holds no totals.\n"
    energy = float(totals.get("energy_j", 0.0))
    rows = [
        ("training energy", f"{energy / J_PER_KWH:.3g} kWh ({energy:.3g} J)"),
        ("duration", human_duration(float(totals.get("duration_s", 0.0)))),
        ("average power", f"{float(totals.get('avg_power_w', 0.0)):.4g} W"),
        ("how it was obtained", KIND_WORDS.get(str(totals.get("kind")), str(totals.get("kind")))),
        ("sources", "; ".join(_source(s) for s in totals.get("sources") or []) or "unknown"),
        # (a multi-process job's are rank 0's; the others metered their devices the same way)
    ]
    if totals.get("processes"):
        rows.append(("processes", f"{totals['processes']}, each metering its share, summed"))
    if totals.get("carbon_g") is not None:
        rows.append(("carbon", f"{float(totals['carbon_g']):.4g} gCO2e"))
    lines = ["## Energy", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "Metered with green_callbacks during training."]
    lines += [f"Note: {note}" for note in summary.get("notes") or []]
    return "\n".join(lines)


def _source(source: Mapping[str, Any]) -> str:
    text = f"{source.get('domain')}: {source.get('kind')} by {source.get('source')}"
    text += f" ({source.get('method')})"
    return text + (f", {source['detail']}" if source.get("detail") else "")
