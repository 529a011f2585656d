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

import html
from collections.abc import Mapping
from typing import Any

from green_callbacks.core.readback import finite
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
        A figure that is missing, negative or not a finite number reads
        "not recorded" (naming the summary's field), never ``nan`` or ``-5 J``;
        every text from the summary is escaped, so a name cannot add HTML or
        break the table.
    """
    totals = job_totals(summary)
    if not totals:
        return "## Energy\n\nNot metered: the run's summary holds no totals.\n"
    energy = _figure(totals, "energy_j")
    duration = _figure(totals, "duration_s")
    power = _figure(totals, "avg_power_w")
    sources = totals.get("sources")
    kind = totals.get("kind")
    rows = [
        ("training energy", _unrecorded("energy_j") if energy is None
         else f"{energy / J_PER_KWH:.3g} kWh ({energy:.3g} J)"),
        ("duration", _unrecorded("duration_s") if duration is None else human_duration(duration)),
        ("average power", _unrecorded("avg_power_w") if power is None else f"{power:.4g} W"),
        ("how it was obtained", KIND_WORDS.get(str(kind), escape(str(kind)))),
        ("sources", "; ".join(_source(s) for s in (sources if isinstance(sources, list) else [])
                              if isinstance(s, Mapping)) or "unknown"),
        # (a multi-process job's are rank 0's; the others metered their devices the same way)
    ]  # fmt: skip
    processes = _figure(totals, "processes")
    if processes:
        rows.append(("processes", f"{processes:g}, each metering its share, summed"))
    if totals.get("carbon_g") is not None:
        carbon = _figure(totals, "carbon_g")
        rows.append(
            ("carbon", _unrecorded("carbon_g") if carbon is None else f"{carbon:.4g} gCO2e")
        )
    lines = ["## Energy", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "Metered with green_callbacks during training."]
    notes = summary.get("notes")
    lines += [f"Note: {escape(str(note))}" for note in (notes if isinstance(notes, list) else [])]
    return "\n".join(lines)


MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*[]|"})
"""Characters that would format a Markdown line or end a table cell: escaped with a backslash."""


def escape(text: str) -> str:
    """``text`` as literal Markdown inside a table cell: HTML escaped, Markdown marks and
    line breaks neutralised.

    Example:
        >>> escape("<b>gpu</b>|0")
        '&lt;b&gt;gpu&lt;/b&gt;\\\\|0'
    """
    flat = " ".join(text.split())
    return html.escape(flat, quote=False).translate(MARKDOWN)


def _figure(totals: Mapping[str, Any], name: str) -> float | None:
    return finite(totals.get(name), minimum=0.0)


def _unrecorded(name: str) -> str:
    return f"not recorded (the summary's {name} is missing or not a number >= 0)"


def _source(source: Mapping[str, Any]) -> str:
    text = f"{source.get('domain')}: {source.get('kind')} by {source.get('source')}"
    text += f" ({source.get('method')})"
    return escape(text + (f", {source['detail']}" if source.get("detail") else ""))
