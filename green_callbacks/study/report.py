"""``green-callbacks study report DIR``: tables and figures from a study's runs.

Writes into ``DIR/report/``:

- ``report.md``: per workload and phase, one table in the layout of the
  framework study's Tables 2 and 3: a row per metric (each energy domain,
  the total, the duration, the quality metrics), the levels side by side
  (mean and standard deviation), then ``p (A12)`` and the winner;
- ``comparisons.json`` and ``comparisons.csv``: every comparison, in full;
- ``box_<metric>.png``: the runs of each level as box plots, one panel per
  workload and phase;
- ``energy_vs_quality.png``: the bubble chart: mean energy against mean quality
  per level and workload, the bubble's area proportional to the mean duration.

Every figure's energy axis says where the figures came from (measured,
estimated...), from the runs' ``kind``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks.core.atomic import atomic_write, write_json_atomic
from green_callbacks.study import stats
from green_callbacks.study.runner import STUDY, TABLE
from green_callbacks.study.stats import Comparison, StudyDataError

REPORT = "report"
BY = ("workload", "phase")


def build_report(folder: str | Path, *, factor: str | None = None) -> Path:
    """Compare the levels of the study's factor and write the report; returns its folder.

    Args:
        folder: what ``study run --out`` wrote (``runs.csv``, ``study.json``).
        factor: the factor compared (default: the study's only factor; with
            several, the others join the ``by`` columns).

    Raises:
        StudyDataError: no runs, or a factor to choose.
    """
    folder = Path(folder)
    rows = stats.measured(stats.read_runs(folder / TABLE))
    levels = _factors(folder)
    factors = list(levels)
    if factor is not None and factor not in levels:
        raise StudyDataError(f"{folder}: the study has no factor {factor!r}; it has {factors}")
    if factor is None:
        if len(factors) != 1:
            raise StudyDataError(
                f"{folder} compares {len(factors)} factors ({', '.join(factors)}); "
                "name one with --factor"
            )
        factor = factors[0]
    by = [*BY, *(f for f in factors if f != factor)]
    comparisons = stats.compare(
        rows, factor, by=by, source=str(folder / TABLE), order=[str(v) for v in levels[factor]]
    )
    kind = _kind(rows)
    out = folder / REPORT
    out.mkdir(exist_ok=True)
    text = markdown(comparisons, factor, kind)
    atomic_write(out / "report.md", lambda part: part.write_text(text, encoding="utf-8"))
    write_json_atomic(out / "comparisons.json", [c.to_dict() for c in comparisons])
    flat = _flat_csv(comparisons)
    atomic_write(out / "comparisons.csv", lambda part: part.write_text(flat, encoding="utf-8"))
    box_plots(rows, comparisons, factor, by, kind, out)
    _bubbles(comparisons, factor, kind, out)
    return out


def _factors(folder: Path) -> dict[str, list[Any]]:
    """The study's factors and their levels, in the study file's order."""
    path = folder / STUDY
    if not path.exists():
        raise StudyDataError(f"{folder} has no {STUDY}: point at a folder 'study run' wrote")
    return dict(json.loads(path.read_text(encoding="utf-8"))["factors"])


def _kind(rows: Sequence[Mapping[str, Any]]) -> str:
    kinds = {str(row.get("kind", "")) for row in rows} - {""}
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "unknown")


def markdown(comparisons: Sequence[Comparison], factor: str, kind: str) -> str:
    """The comparisons as Markdown tables, one per group (the study's Tables 2 and 3 layout).

    Args:
        comparisons: what :func:`~green_callbacks.study.stats.compare` returned.
        factor: the factor compared, for the headings.
        kind: the energy figures' provenance, stated once at the top.
    """
    groups: dict[tuple[tuple[str, str], ...], list[Comparison]] = {}
    for comparison in comparisons:
        groups.setdefault(tuple(comparison.by.items()), []).append(comparison)
    lines = [
        f"# Study report: {factor}",
        "",
        f"Energy figures are **{kind}**. Each cell: mean (standard deviation) over the "
        "measured runs; `p (A12)`: the test's p-value and, for two levels, Vargha-Delaney "
        "A12 of the first level over the second; **bold**: the winner (p < 0.05).",
    ]
    for key, members in groups.items():
        title = ", ".join(f"{k} {v}" for k, v in key)
        levels = list(members[0].levels)
        lines += ["", f"## {title}", ""]
        lines.append("| metric | " + " | ".join(levels) + " | p (A12) | winner |")
        lines.append("| --- | " + " | ".join("---:" for _ in levels) + " | ---: | --- |")
        for c in members:
            cells = []
            for level in levels:
                figure = c.levels[level]
                cell = f"{figure.mean:.4g} ({figure.std:.2g})"
                cells.append(f"**{cell}**" if level == c.winner else cell)
            effect = f" ({c.a12:.2f})" if c.a12 is not None else ""
            better = "higher" if c.higher_is_better else "lower"
            lines.append(
                f"| {c.metric} ({better} better) | " + " | ".join(cells)
                + f" | {c.p_value:.3g}{effect} | {c.winner or '-'} |"
            )  # fmt: skip
    return "\n".join(lines) + "\n"


def _flat_csv(comparisons: Sequence[Comparison]) -> str:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["by", "metric", "level", "n", "mean", "median", "std", "ratio", "test",
                     "p_value", "a12", "magnitude", "winner"])  # fmt: skip
    for c in comparisons:
        where = ";".join(f"{k}={v}" for k, v in c.by.items())
        for level, figure in c.levels.items():
            writer.writerow([where, c.metric, level, figure.n, figure.mean, figure.median,
                             figure.std, "" if c.ratio[level] is None else c.ratio[level],
                             c.test, c.p_value,
                             "" if c.a12 is None else c.a12, c.magnitude or "",
                             c.winner or ""])  # fmt: skip
    return text.getvalue()


def box_plots(
    rows: Sequence[Mapping[str, Any]],
    comparisons: Sequence[Comparison],
    factor: str,
    by: Sequence[str],
    kind: str,
    out: Path,
) -> None:
    """One box plot per metric: the levels of ``factor`` side by side, a panel per ``by`` group.

    Args:
        rows: one mapping per run.
        comparisons: what :func:`~green_callbacks.study.stats.compare` returned (their metrics).
        factor: the column holding the levels.
        by: the columns defining the panels.
        kind: the energy's provenance, shown on energy axes.
        out: the folder the PNGs (``box_<metric>.png``) go to.
    """
    pyplot = headless_pyplot("study", purpose="Study figures")
    metrics = list(dict.fromkeys(c.metric for c in comparisons))
    groups = list(dict.fromkeys(tuple(str(row[b]) for b in by) for row in rows))
    for metric in metrics:
        figure, axes = pyplot.subplots(1, len(groups), figsize=(3.2 * len(groups) + 1, 3.6),
                                       squeeze=False)  # fmt: skip
        for axis, group in zip(axes[0], groups):
            members = [row for row in rows if tuple(str(row[b]) for b in by) == group]
            levels = list(dict.fromkeys(str(row[factor]) for row in members))
            data = [
                [float(row[metric]) for row in members
                 if str(row[factor]) == level and str(row[metric]).strip()]
                for level in levels
            ]  # fmt: skip
            axis.boxplot(data)
            axis.set_xticks(range(1, len(levels) + 1), levels, rotation=20, fontsize=8)
            axis.set_title(" ".join(group), fontsize=9)
            axis.grid(alpha=0.3)
        unit = f" ({kind})" if metric.startswith("energy") else ""
        axes[0][0].set_ylabel(metric + unit)
        figure.suptitle(f"{metric} by {factor}", fontsize=10)
        figure.tight_layout()
        figure.savefig(out / f"box_{metric}.png", dpi=110)
        pyplot.close(figure)


def _bubbles(comparisons: Sequence[Comparison], factor: str, kind: str, out: Path) -> None:
    """Mean energy against mean quality per level and group; area ~ mean duration."""
    pyplot = headless_pyplot("study", purpose="Study figures")
    by_group: dict[tuple[tuple[str, str], ...], dict[str, Comparison]] = {}
    for c in comparisons:
        by_group.setdefault(tuple(c.by.items()), {})[c.metric] = c
    figure, axis = pyplot.subplots(figsize=(6.5, 4.5))
    drawn = False
    for key, metrics in by_group.items():
        energy = metrics.get("energy_j")
        quality = next((metrics[q] for q in stats.HIGHER_IS_BETTER if q in metrics), None)
        duration = metrics.get("duration_s")
        if energy is None or quality is None or duration is None:
            continue
        longest = max(level.mean for level in duration.levels.values()) or 1.0
        for index, level in enumerate(energy.levels):  # one colour per level, in every group
            area = 60 + 600 * duration.levels[level].mean / longest
            axis.scatter(energy.levels[level].mean, quality.levels[level].mean, s=area,
                         alpha=0.5, color=f"C{index}")  # fmt: skip
            axis.annotate(f"{level}\n{' '.join(v for _, v in key)}",
                          (energy.levels[level].mean, quality.levels[level].mean),
                          fontsize=7, ha="center")  # fmt: skip
            drawn = True
    axis.set_xlabel(f"mean energy per run (J, {kind})")
    axis.set_ylabel("mean quality")
    axis.set_title(f"Energy against quality by {factor} (area: mean duration)")
    axis.grid(alpha=0.3)
    if not drawn:
        axis.text(0.5, 0.5, "no quality metric recorded", ha="center", transform=axis.transAxes)
    figure.tight_layout()
    figure.savefig(out / "energy_vs_quality.png", dpi=110)
    pyplot.close(figure)
