"""A run report people can look at: one self-contained HTML page and the same figures as PNGs.

For each run (:func:`~green_callbacks.analysis.run.read_run`): its totals and
where they came from, what its sources lack, the advisor's findings, and the
figures its records allow:

- energy per epoch next to the quality metric;
- the quality metric against cumulative joules (the diminishing-returns curve),
  with the epoch where ``EnergyEarlyStopping`` would have stopped;
- power over time from the trace, training and validation shaded;
- energy by domain;

and, for several runs, their quality-against-joules curves overlaid. Every
energy axis names the figures' provenance (measured, estimated, replayed, or
unknown). The page embeds its images, so it opens from disk with no network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks.analysis.advisor import Finding, Thresholds, advise, would_stop
from green_callbacks.analysis.results import ToolResult
from green_callbacks.analysis.run import RunRecord
from green_callbacks.core.atomic import atomic_write

PAGE = "report.html"


def build_report(
    runs: Sequence[RunRecord],
    out: str | Path,
    *,
    results: Sequence[ToolResult] = (),
    thresholds: Thresholds | None = None,
) -> Path:
    """Write ``report.html`` and its PNG figures into ``out``; returns the page.

    Args:
        runs: the runs to show (several: their curves are also overlaid).
        out: the folder (created).
        results: other tools' outputs to show after the runs
            (:func:`~green_callbacks.analysis.results.read_result`).
        thresholds: the advisor's thresholds (default :class:`Thresholds`).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    thresholds = thresholds or Thresholds()
    sections = []
    for index, run in enumerate(runs):
        figures = _run_figures(run, folder, f"run{index + 1}", thresholds)
        sections.append(_section(run, figures, advise(run, thresholds)))
    sections += [_result_section(result) for result in results]
    overlay = _overlay(runs, folder) if len(runs) > 1 else None
    page = _page(runs, sections, overlay)
    path = folder / PAGE
    atomic_write(path, lambda part: part.write_text(page, encoding="utf-8"))
    return path


def _kind(run: RunRecord) -> str:
    return run.energy_kind or "provenance unknown"


def _run_figures(run: RunRecord, folder: Path, prefix: str, t: Thresholds) -> list[Path]:
    pyplot = headless_pyplot("study", purpose="the run report's figures")
    made = []
    for name, draw in (
        ("epochs", _epochs),
        ("returns", _returns),
        ("power", _power),
        ("domains", _domains),
    ):
        figure = pyplot.figure(figsize=(6.4, 3.6))
        axis = figure.add_subplot()
        if draw(run, axis, t):
            figure.tight_layout()
            path = folder / f"{prefix}_{name}.png"
            figure.savefig(path, dpi=100)
            made.append(path)
        pyplot.close(figure)
    return made


BARS_UP_TO = 200
"""Epochs drawn as bars (and points marked) up to this many; a longer run as lines."""
POINTS_UP_TO = 2000
"""Points a line keeps: a longer series is thinned evenly (its last point kept)."""


def _thin(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most :data:`POINTS_UP_TO` of ``points``, evenly spaced, the last kept."""
    if len(points) <= POINTS_UP_TO:
        return list(points)
    step = -(-len(points) // POINTS_UP_TO)
    kept = list(points[::step])
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


def _label(text: object) -> str:
    """Text from a run's files as a matplotlib label: ``$`` would start mathematics."""
    return str(text).replace("$", r"\$")


def _epochs(run: RunRecord, axis: Any, t: Thresholds) -> bool:
    energy = run.epoch_energy()
    if not energy:
        return False
    per = "epoch" if run.epoch_stride == 1 else f"group of {run.epoch_stride} epochs"
    if len(energy) <= BARS_UP_TO:
        axis.bar([e for e, _ in energy], [j for _, j in energy], color="C0", alpha=0.6)
    else:
        drawn = _thin(energy)
        axis.fill_between([e for e, _ in drawn], [j for _, j in drawn], step="mid",
                          color="C0", alpha=0.6, linewidth=0)  # fmt: skip
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"energy per {per}, J ({_kind(run)})")
    key = run.quality_key
    if key is not None:
        twin = axis.twinx()
        points = run.series(key)
        marker = "o" if len(points) <= BARS_UP_TO else None
        drawn_points = _thin(points)
        twin.plot([e for e, _ in drawn_points], [v for _, v in drawn_points], color="C1",
                  marker=marker)  # fmt: skip
        twin.set_ylabel(_label(key), color="C1")
    axis.set_title(f"Energy per {per}" + (f" and {_label(key)}" if key else ""))
    return True


def _returns(run: RunRecord, axis: Any, t: Thresholds) -> bool:
    key, energy = run.quality_key, dict(run.epoch_energy())
    points = [(e, v) for e, v in run.series(key)] if key else []
    points = [(e, v) for e, v in points if e in energy]
    if len(points) < 2 or key is None:
        return False
    cumulative, total = [], 0.0
    for epoch, _ in points:
        total += energy[epoch]
        cumulative.append(total / 1000.0)
    drawn = _thin(list(zip(cumulative, [v for _, v in points], strict=True)))
    marker = "o" if len(points) <= BARS_UP_TO else None
    axis.plot([c for c, _ in drawn], [v for _, v in drawn], marker=marker, color="C1")
    stop = would_stop(run, t)
    if stop is not None:
        at = next(c for (e, _), c in zip(points, cumulative) if e == stop)
        axis.axvline(at, color="C3", linestyle="--", linewidth=1)
        axis.annotate(
            f"EnergyEarlyStopping\nwould stop after epoch {stop}",
            (at, points[0][1]),
            xytext=(-4, 4),
            ha="right",
            textcoords="offset points",
            fontsize=8,
            color="C3",
        )
    axis.set_xlabel(f"cumulative energy, kJ ({_kind(run)})")
    axis.set_ylabel(_label(key))
    axis.set_title(f"{_label(key)} against energy spent")
    axis.grid(alpha=0.3)
    return True


def _power(run: RunRecord, axis: Any, t: Thresholds) -> bool:
    steps = [w for w in run.windows if w["level"] == "batch" and w["duration_s"] > 0]
    if not steps:
        steps = [w for w in run.windows if w["level"] == "epoch" and w["duration_s"] > 0]
    if not steps or "start_s" not in steps[0]:
        return False
    origin = min(w["start_s"] for w in run.windows if "start_s" in w)
    epochs = [w for w in run.windows if w["level"] == "epoch" and "start_s" in w]
    shaded = len(epochs) <= 2 * BARS_UP_TO  # more would be a solid block, and slow to draw
    for phase, colour in (("train", "C0"), ("val", "C2")):
        for w in (w for w in epochs if shaded and w.get("name") == phase):
            axis.axvspan(
                w["start_s"] - origin,
                w["start_s"] - origin + w["duration_s"],
                color=colour,
                alpha=0.12,
                linewidth=0,
            )
    drawn = _thin([(w["start_s"] - origin + w["duration_s"] / 2, w["energy_j"] / w["duration_s"])
                   for w in steps if "start_s" in w])  # fmt: skip
    axis.plot([x for x, _ in drawn], [p for _, p in drawn], color="C0", linewidth=1)
    saves = [c["time_s"] for c in run.facts.get("checkpoints") or []
             if isinstance(c.get("time_s"), (int, float))][:BARS_UP_TO]  # fmt: skip
    for at in saves:
        axis.axvline(at - origin, color="C3", linestyle=":", linewidth=1)
    marks = "; dotted red: checkpoint saves" if saves else ""
    shading = "shaded: training blue, validation green" if shaded else "epochs not shaded"
    axis.set_xlabel(f"time since the run started, s ({shading}{marks})", fontsize=8)
    axis.set_ylabel(f"power, W ({_kind(run)})")
    axis.set_title("Power over time")
    axis.set_ylim(bottom=0)
    return True


def _domains(run: RunRecord, axis: Any, t: Thresholds) -> bool:
    if not run.by_domain:
        return False
    names = list(run.by_domain)[:BARS_UP_TO]
    axis.barh([_label(n) for n in names], [run.by_domain[n] for n in names], color="C0")
    axis.set_xlabel(f"energy, J ({_kind(run)})")
    axis.set_title("Energy by domain")
    return True


def _overlay(runs: Sequence[RunRecord], folder: Path) -> Path | None:
    pyplot = headless_pyplot("study", purpose="the run report's figures")
    figure = pyplot.figure(figsize=(6.4, 3.8))
    axis = figure.add_subplot()
    drawn = 0
    for index, run in enumerate(runs):
        key, energy = run.quality_key, dict(run.epoch_energy())
        points = [(e, v) for e, v in run.series(key) if e in energy] if key else []
        if len(points) < 2:
            continue
        total, xs = 0.0, []
        for epoch, _ in points:
            total += energy[epoch]
            xs.append(total / 1000.0)
        drawn_points = _thin(list(zip(xs, [v for _, v in points], strict=True)))
        axis.plot(
            [x for x, _ in drawn_points], [v for _, v in drawn_points],
            marker="o" if len(points) <= BARS_UP_TO else None,
            label=_label(f"run {index + 1}: {key} ({_kind(run)})"),
        )  # fmt: skip
        drawn += 1
    path = None
    if drawn:
        axis.set_xlabel("cumulative energy, kJ")
        axis.set_ylabel("quality metric")
        axis.set_title("Runs compared: quality against energy")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        path = folder / "runs_overlay.png"
        figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def _images(figures: Sequence[Path]) -> str:
    e = html.escape
    return "".join(
        f"<figure><img alt='{e(p.stem)}' src='data:image/png;base64,"
        f"{base64.b64encode(p.read_bytes()).decode()}'><figcaption>{e(p.name)}</figcaption>"
        "</figure>"
        for p in figures
    )


def _result_section(result: ToolResult) -> str:
    e = html.escape
    return (f"<section><h2>{e(result.title)}</h2><p>{e(result.source)}</p>"
            f"<pre>{e(result.text)}</pre>{_images(result.figures)}</section>")  # fmt: skip


def _section(run: RunRecord, figures: Sequence[Path], findings: Sequence[Finding]) -> str:
    e = html.escape
    rows = [
        ("energy", "-" if run.total_j is None else f"{run.total_j:.4g} J"),
        ("duration", "-" if run.duration_s is None else f"{run.duration_s:.4g} s"),
        ("provenance", _kind(run) + (f": {run.energy_source}" if run.energy_source else "")),
        (
            "epochs",
            str(len(run.epochs))
            if run.epoch_stride == 1
            else f"{len(run.epochs)} groups of {run.epoch_stride} consecutive epochs",
        ),
        ("read from", ", ".join(run.formats)),
    ]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    missing = "".join(f"<li>{e(m)}</li>" for m in [*run.missing, *run.notes])
    advice = "".join(
        f"<tr class='{e(f.verdict.replace(' ', '-'))}'><td>{e(f.title)}</td><td>{e(f.verdict)}"
        f"</td><td>{e(f.reason)}</td><td>{e(f.action or '') if f.verdict == 'applies' else ''}"
        f"</td></tr>"
        for f in findings
    )
    images = _images(figures)
    return (
        f"<section><h2>{e(run.source)}</h2><table>{table}</table>"
        + (f"<h3>Missing or noted</h3><ul>{missing}</ul>" if missing else "")
        + f"<h3>Figures</h3>{images or '<p>No figure: the sources hold no series.</p>'}"
        + "<h3>Advice</h3><table class='advice'><tr><th>pattern</th><th>verdict</th>"
        + f"<th>why</th><th>change</th></tr>{advice}</table></section>"
    )


STYLE = (
    "pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:85%}"
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;vertical-align:top}figure{display:inline-block;margin:.5em}"
    "img{max-width:520px}.applies{background:#fff3cd}.cannot-tell{color:#777}"
)


def _page(runs: Sequence[RunRecord], sections: Sequence[str], overlay: Path | None) -> str:
    compared = ""
    if overlay is not None:
        data = base64.b64encode(overlay.read_bytes()).decode()
        compared = (
            f"<section><h2>Runs compared</h2><figure><img alt='runs overlay' "
            f"src='data:image/png;base64,{data}'></figure></section>"
        )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Energy report ({len(runs)} run{'s' if len(runs) != 1 else ''})</title>"
        f"<style>{STYLE}</style></head><body><h1>Energy report</h1>"
        "<p>Figures say where their energy came from: measured (a sensor), estimated (a "
        "model of the hardware) or replayed (a recorded trace). Advice: docs/advisor.md.</p>"
        f"{compared}{''.join(sections)}</body></html>\n"
    )
