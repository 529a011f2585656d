"""The other tools' outputs in a report: compression reports, serving sweeps, studies, searches.

Each is recognised by the files its tool writes and becomes a :class:`ToolResult`:
a title, a text table and figures drawn into the report folder.

- a compression report (``compression_report.json``): original and compressed
  side by side, as ratios to the original, with the verdict;
- a serving sweep (``serving`` folder: ``runs.jsonl`` of served configurations):
  its table and joules-per-request-against-latency figure, with the
  recommendation when the sweep wrote one;
- an energy study (``study.json`` and ``runs.csv``): its comparison tables and box plots;
- a search comparison (``hpo compare``: ``results.json`` and ``searches.csv``):
  its per-strategy table and best-so-far figure.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks.core.ledger import LEDGER, read_ledger
from green_callbacks.core.readback import parse_json

COMPRESSION = "compression_report.json"


@dataclass
class ToolResult:
    """One tool's output, ready for the report page.

    Attributes:
        kind: ``compression``, ``serving``, ``study`` or ``hpo``.
        source: the path read.
        title: a heading.
        text: the table or summary, as preformatted text.
        figures: PNG files in the report folder.
    """

    kind: str
    source: str
    title: str
    text: str
    figures: list[Path] = field(default_factory=list)


def read_result(path: str | Path, out: Path) -> ToolResult | None:
    """The tool output at ``path``, with its figures drawn into ``out``; None if none is there.

    Args:
        path: a compression report file, or a sweep, study or search folder.
        out: the report folder the figures go to.
    """
    where = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if where.is_file() and where.suffix == ".json":
        data = _json(where)
        return _compression(data, where, out) if _is_compression(data) else None
    if not where.is_dir():
        return None
    if (where / COMPRESSION).is_file() and _is_compression(data := _json(where / COMPRESSION)):
        return _compression(data, where / COMPRESSION, out)
    if (where / "study.json").is_file() and (where / "runs.csv").is_file():
        return _study(where, out)
    if (where / "results.json").is_file() and (where / "searches.csv").is_file():
        return _hpo(where, out)
    if (where / LEDGER).is_file() and (where / "results.csv").is_file():
        return _serving(where, out)
    return None


def _json(path: Path) -> Any:
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_compression(data: Any) -> bool:
    return isinstance(data, dict) and {"technique", "original", "compressed"} <= set(data)


def _compression(data: dict[str, Any], path: Path, out: Path) -> ToolResult:
    before, after = data["original"], data["compressed"]
    names = [k for k in ("j_per_sample", "s_per_sample", "params", "size_bytes", "macs")
             if before.get(k) and after.get(k) is not None]  # fmt: skip
    pyplot = headless_pyplot("study", purpose="the report's compression figure")
    figure = pyplot.figure(figsize=(6.4, 3.6))
    axis = figure.add_subplot()
    axis.bar(names, [after[k] / before[k] for k in names], color="C0")
    axis.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    axis.set_ylabel("compressed / original")
    kind = after.get("energy_kind", "provenance unknown")
    axis.set_title(f"{data['technique']}: costs after over before (energy {kind})")
    figure.tight_layout()
    figure_path = out / f"compression_{len(list(out.glob('compression_*.png'))) + 1}.png"
    figure.savefig(figure_path, dpi=100)
    pyplot.close(figure)
    accuracy = (f"accuracy {before.get('accuracy')} -> {after.get('accuracy')}"
                if before.get("accuracy") is not None else "accuracy not measured")  # fmt: skip
    lines = [data.get("verdict", ""), accuracy,
             f"inference {before['j_per_sample']:.4g} -> {after['j_per_sample']:.4g} J/sample "
             f"({kind}: {after.get('energy_source', '')})",
             *(f"warning: {w}" for w in data.get("warnings", []))]  # fmt: skip
    return ToolResult("compression", str(path), f"Compression: {data['technique']}",
                      "\n".join(lines), [figure_path])  # fmt: skip


def _serving(folder: Path, out: Path) -> ToolResult:
    from green_callbacks.serving import sweep
    from green_callbacks.serving.server import ServingResult

    contents = read_ledger(folder)
    results = [r for r in (ServingResult.from_record(x.get("result")) for x in contents.records)
               if r is not None]  # fmt: skip
    recommendation = _json(folder / sweep.RECOMMENDATION) or []
    slo = recommendation[0]["slo_ms"] if recommendation else None
    drawn = sweep.plot(results, out, slo_ms=slo)
    figure = out / f"serving_{len(list(out.glob('serving_*.png'))) + 1}.png"
    drawn.replace(figure)
    text = sweep.format_table(results)
    text += "".join(f"\n{r['message']}" for r in recommendation)
    return ToolResult("serving", str(folder), "Serving sweep: joules per request against latency",
                      text, [figure])  # fmt: skip


def _study(folder: Path, out: Path) -> ToolResult:
    from green_callbacks.study.report import build_report

    made = build_report(folder)
    figures = []
    for png in sorted(made.glob("*.png")):
        copy = out / f"study_{png.name}"
        shutil.copyfile(png, copy)
        figures.append(copy)
    text = (made / "report.md").read_text(encoding="utf-8")
    return ToolResult("study", str(folder), "Energy study", text, figures)


def _hpo(folder: Path, out: Path) -> ToolResult:
    from green_callbacks.hpo import format_summary

    data = _json(folder / "results.json") or {}
    target = float(data.get("config", {}).get("target", 0.9))
    text = format_summary(data.get("strategies", {}), target)
    figures = []
    if (folder / "best_so_far.png").is_file():
        figures.append(out / "hpo_best_so_far.png")
        shutil.copyfile(folder / "best_so_far.png", figures[0])
    return ToolResult("hpo", str(folder), "Search strategies compared", text, figures)
