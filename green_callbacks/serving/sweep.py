"""Rates x batching policies: a table, the thesis's figure, and the policy to use.

:func:`run_sweep` serves every stream with every policy, one configuration after
another, and appends each result to ``runs.jsonl`` in the output folder as soon
as it is measured (the run ledger, :mod:`green_callbacks.core.ledger`): an
interrupted sweep keeps what it measured, a rerun with the same settings measures
only the rest, and a folder measured with another model, meter, limit or machine
is refused with the difference named. A configuration that served nothing is
recorded as such: its latencies and joules per request are None and its
``note`` says why. :func:`recommend` is the thesis's
procedure as a function: per stream, the policy with the fewest joules per
request whose p99 latency meets the objective (and that kept up), with its
saving against the worst policy and against batch 1.

Example, recommendations from two recorded results (no model needed):
    >>> from green_callbacks.serving.server import ServingResult
    >>> def result(policy, j, p99):
    ...     return ServingResult("regular:32", policy, 32.0, 100, 100, 10, 10.0, 3.0, 3.0 * j,
    ...         1.0, None, j, None, 1.0, p99 / 2, p99 / 2, p99, p99, p99, 32.0, 0.0, True, False,
    ...         "measured", "cpu:0=rapl")
    >>> [r] = recommend([result("fixed:1", 2.0, 5.0), result("fixed:32", 0.5, 990.0),
    ...                  result("maxwait:32/20", 0.8, 40.0)], slo_ms=100)
    >>> r.chosen, r.saving_vs_batch1, r.saving_vs_worst
    ('maxwait:32/20', 0.6, 0.6)
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks._optional import require
from green_callbacks.core.atomic import atomic_write, write_json_atomic
from green_callbacks.core.ledger import Ledger, fingerprint
from green_callbacks.core.machine import machine
from green_callbacks.serving.policy import parse_policy
from green_callbacks.serving.server import RunBatch, ServeConfig, ServingResult, serve
from green_callbacks.serving.stream import parse_stream

MACHINE = "machine.json"

TABLE = "results.csv"
FIGURE = "joules_vs_latency.png"
RECOMMENDATION = "recommendation.json"


@dataclass(frozen=True)
class Recommendation:
    """The thesis's procedure for one stream.

    Attributes:
        stream: the stream's spec.
        slo_ms: the p99 latency objective. Units: ms.
        chosen: the policy with the fewest joules per request that meets it, or None.
        j_per_request: the chosen policy's joules per request. Units: J.
        saving_vs_worst: 1 - chosen / the most joules per request of any policy.
        saving_vs_batch1: 1 - chosen / ``fixed:1`` (or ``greedy:1``), None without it.
        closest: when none meets the objective, the policy with the lowest p99.
        message: the recommendation in words.
    """

    stream: str
    slo_ms: float
    chosen: str | None
    j_per_request: float | None
    saving_vs_worst: float | None
    saving_vs_batch1: float | None
    closest: str | None
    message: str


def run_sweep(
    run_batch: RunBatch,
    streams: Sequence[str],
    policies: Sequence[str],
    config: ServeConfig,
    out: str | Path,
    *,
    model: str = "",
    progress: TextIO | None = None,
    serve_one: Callable[..., ServingResult] | None = None,
) -> list[ServingResult]:
    """Serve every stream with every policy; results kept in ``out/runs.jsonl`` (the ledger).

    A rerun into the same folder measures only the configurations not yet
    there; a folder measured with another model, meter, limit, machine or
    package version is refused with the difference named.

    Args:
        run_batch: the model on n requests (:func:`~green_callbacks.serving.batch_runner`).
        streams: stream specs (``regular:32``...); all are parsed before anything runs.
        policies: policy specs (``fixed:16``...); likewise.
        config: each configuration's length, cap, warm-up, idle baseline and meters.
        out: the sweep's folder (created); a rerun resumes there.
        model: what names the model (``--model``'s spec, the image size...): part of
            what the folder's figures are keyed by.
        progress: where one line per configuration goes (default stderr).
        serve_one: the function serving one configuration (default :func:`serve`;
            tests pass a fake one).

    Raises:
        ServingConfigError: a spec that cannot be parsed.
        LedgerMismatchError: ``out`` holds another sweep's results.
        LedgerLockedError: another process is writing ``out``.
    """
    parsed = [(parse_stream(s), parse_policy(p)) for s in streams for p in policies]
    serve_one = serve_one or serve
    stream_out = progress if progress is not None else sys.stderr
    settings = {k: v for k, v in asdict(config).items() if k != "meters"}
    definition = {"model": model, "config": settings, "meters": _meters(config.meters),
                  "machine": machine()}  # fmt: skip
    results = []
    with Ledger.open(out, "serve-sweep", definition) as ledger:
        folder = ledger.folder
        write_json_atomic(folder / MACHINE, definition["machine"])
        for index, (stream, policy) in enumerate(parsed):
            key = {"stream": stream.label, "arrivals": fingerprint(stream.arrivals(
                   config.requests)), "policy": policy.label}  # fmt: skip
            record = ledger.get(key)
            result = ServingResult.from_record(record and record.get("result"))
            if result is None:
                print(f"[{index + 1}/{len(parsed)}] {stream.label} {policy.label} ...",
                      file=stream_out, flush=True)  # fmt: skip
                result = serve_one(run_batch, stream, policy, config)
                ledger.append(key, {"index": index, "result": result.to_dict()})
                print(f"    {_line(result)}", file=stream_out, flush=True)
            results.append(result)
        text = table_csv(results)
        atomic_write(folder / TABLE, lambda part: part.write_text(text, encoding="utf-8"))
    return results


def _meters(meters: object) -> object:
    """The meters as the definition names them: specs as given, meter objects by name."""
    items = meters if isinstance(meters, (list, tuple)) else [meters]
    return [m if isinstance(m, str) else getattr(m, "name", type(m).__name__) for m in items]


def recommend(results: Sequence[ServingResult], slo_ms: float) -> list[Recommendation]:
    """Per stream, the policy with the fewest joules per request meeting ``slo_ms`` at p99.

    Args:
        results: a sweep's results.
        slo_ms: the tolerated p99 latency. Units: ms.
    """
    found = []
    for stream in dict.fromkeys(r.stream for r in results):
        mine = [r for r in results if r.stream == stream]
        answered = [r for r in mine if r.j_per_request is not None]
        ok = [r for r in answered if r.kept_up and _p99(r) <= slo_ms]
        if not ok:
            found.append(_none_meets(stream, slo_ms, answered))
            continue
        best = min(ok, key=_j)
        worst = max(_j(r) for r in answered)
        single = [r for r in answered if parse_policy(r.policy).batch == 1]
        vs_one = 1.0 - _j(best) / _j(single[0]) if single else None
        vs_worst = 1.0 - _j(best) / worst if worst else 0.0
        found.append(Recommendation(
            stream, slo_ms, best.policy, best.j_per_request, round(vs_worst, 4),
            None if vs_one is None else round(vs_one, 4), None,
            f"{stream}: use {best.policy}: {_j(best):.4g} J/request at p99 "
            f"{_p99(best):.1f} ms, {vs_worst:.0%} less than the worst policy"
            + ("" if vs_one is None or best is single[0] else f", {vs_one:.0%} less than batch 1"),
        ))  # fmt: skip
    return found


def _j(r: ServingResult) -> float:
    return math.inf if r.j_per_request is None else r.j_per_request


def _p99(r: ServingResult) -> float:
    return math.inf if r.latency_p99_ms is None else r.latency_p99_ms


def _none_meets(stream: str, slo_ms: float, answered: list[ServingResult]) -> Recommendation:
    if not answered:
        message = (f"{stream}: no policy answered a request (see each result's note); raise "
                   "the cap (--max-s) or serve on faster hardware")  # fmt: skip
        return Recommendation(stream, slo_ms, None, None, None, None, None, message)
    closest = min(answered, key=lambda r: (not r.kept_up, _p99(r)))
    return Recommendation(
        stream, slo_ms, None, None, None, None, closest.policy,
        f"{stream}: no policy meets p99 <= {slo_ms:g} ms while keeping up; the closest "
        f"is {closest.policy} (p99 {_p99(closest):.1f} ms, {_j(closest):.4g} J/request). "
        "Raise the objective, or serve on faster hardware",
    )  # fmt: skip


def write_recommendations(out: str | Path, recommendations: Sequence[Recommendation]) -> Path:
    """Write the recommendations as JSON in the sweep's folder; returns the file.

    Args:
        out: the sweep's folder.
        recommendations: what :func:`recommend` returned.
    """
    path = Path(out) / RECOMMENDATION
    text = json.dumps([asdict(r) for r in recommendations], indent=2) + "\n"
    atomic_write(path, lambda part: part.write_text(text, encoding="utf-8"))
    return path


COLUMNS = ("stream", "policy", "served", "mean_batch", "j_per_request",
           "j_per_request_above_idle", "latency_p50_ms", "latency_p99_ms", "latency_max_ms",
           "throughput_rps", "kept_up", "energy_kind")  # fmt: skip


def table_csv(results: Sequence[ServingResult]) -> str:
    """Every figure of every configuration as CSV text, one row each.

    Args:
        results: a sweep's results.
    """
    text = io.StringIO()
    rows = [r.to_dict() for r in results]
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else list(COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def format_table(results: Sequence[ServingResult]) -> str:
    """The main figures as an aligned text table.

    Args:
        results: a sweep's results.
    """
    head = ("stream", "policy", "batch", "J/req", "J/req>idle", "p50 ms", "p99 ms", "max ms",
            "req/s", "kept up")  # fmt: skip
    rows = [head] + [
        (r.stream, r.policy, f"{r.mean_batch:.1f}", _cell(r.j_per_request, ".4g"),
         _cell(r.j_per_request_above_idle, ".4g"), _cell(r.latency_p50_ms, ".1f"),
         _cell(r.latency_p99_ms, ".1f"), _cell(r.latency_max_ms, ".1f"),
         f"{r.throughput_rps:.1f}", "yes" if r.kept_up else "NO")
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    kinds = sorted({r.energy_kind for r in results})
    notes = [f"{r.stream} {r.policy}: {r.note}" for r in results if r.note]
    return "\n".join([*lines, f"energy: {', '.join(kinds)} ({results[0].energy_source})",
                      *notes]) if results else "no results"  # fmt: skip


def _cell(value: float | None, spec: str) -> str:
    """A table cell: the figure, or "-" where it has no value (the result's note says why)."""
    return "-" if value is None else format(value, spec)


def plot(results: Sequence[ServingResult], out: str | Path, *, slo_ms: float | None = None) -> Path:
    """The thesis's figure: joules per request against the longest wait, one panel per stream.

    Args:
        results: a sweep's results.
        out: the folder the PNG goes to.
        slo_ms: the p99 objective: drawn as a line, and the recommended policy
            (:func:`recommend`) ringed. Units: ms.
    """
    pyplot = headless_pyplot("study", purpose="the serving sweep's figure")
    ticker = require("matplotlib.ticker", "study", purpose="the serving sweep's figure")
    streams = list(dict.fromkeys(r.stream for r in results))
    chosen = {} if slo_ms is None else {c.stream: c.chosen for c in recommend(results, slo_ms)}
    figure, axes = pyplot.subplots(1, len(streams), figsize=(4.2 * len(streams), 3.8),
                                   squeeze=False, sharey=True)  # fmt: skip
    for axis, stream in zip(axes[0], streams):
        for r in results:
            if r.stream != stream or r.j_per_request is None or r.latency_max_ms is None:
                continue  # nothing served: no point to draw (the table says why)
            marker = "o" if r.kept_up else "x"
            axis.scatter(r.latency_max_ms, r.j_per_request, marker=marker, color="C0")
            if chosen.get(stream) == r.policy:
                axis.scatter(r.latency_max_ms, r.j_per_request, s=160, facecolors="none",
                             edgecolors="C3", linewidths=1.5)  # fmt: skip
            axis.annotate(r.policy, (r.latency_max_ms, r.j_per_request), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")  # fmt: skip
        if slo_ms is not None:
            axis.axvline(slo_ms, color="grey", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        axis.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.set_ylim(bottom=0)
        axis.set_title(stream)
        axis.set_xlabel("longest wait (ms)")
        axis.grid(alpha=0.3)
    kind = ", ".join(sorted({r.energy_kind for r in results}))
    axes[0][0].set_ylabel(f"J per request, idle included ({kind})")
    slo = (
        ""
        if slo_ms is None
        else f";\nred ring: fewest J/request with p99 <= {slo_ms:g} ms (dotted)"
    )
    figure.suptitle(f"Batching policies: energy against waiting (x: did not keep up{slo})")
    figure.tight_layout()
    path = Path(out) / FIGURE
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def _line(r: ServingResult) -> str:
    if r.j_per_request is None:
        return r.note
    kept = "" if r.kept_up else ", did NOT keep up"
    return (f"{r.j_per_request:.4g} J/request, p99 {_p99(r):.1f} ms, "
            f"mean batch {r.mean_batch:.1f}{kept}")  # fmt: skip
