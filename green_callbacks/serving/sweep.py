"""Rates x batching policies: a table, the thesis's figure, and the policy to use.

:func:`run_sweep` serves every stream with every policy, one configuration after
another, and appends each result to ``runs.jsonl`` in the output folder as soon
as it is measured: an interrupted sweep keeps what it measured and a rerun with
the same settings measures only the rest. :func:`recommend` is the thesis's
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
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks._optional import require
from green_callbacks.core.atomic import atomic_write
from green_callbacks.serving.policy import parse_policy
from green_callbacks.serving.server import RunBatch, ServeConfig, ServingResult, serve
from green_callbacks.serving.stream import ServingConfigError, parse_stream
from green_callbacks.study.runner import MACHINE, RUNS, append_record, finished, machine

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
    progress: TextIO | None = None,
    serve_one: Callable[..., ServingResult] | None = None,
) -> list[ServingResult]:
    """Serve every stream with every policy; results appended to ``out/runs.jsonl``.

    Args:
        run_batch: the model on n requests (:func:`~green_callbacks.serving.batch_runner`).
        streams: stream specs (``regular:32``...); all are parsed before anything runs.
        policies: policy specs (``fixed:16``...); likewise.
        config: each configuration's length, cap, warm-up, idle baseline and meters.
        out: the sweep's folder (created); a rerun resumes there.
        progress: where one line per configuration goes (default stderr).
        serve_one: the function serving one configuration (default :func:`serve`;
            tests pass a fake one).

    Raises:
        ServingConfigError: a spec that cannot be parsed, or ``out`` holding
            another sweep's results.
    """
    parsed = [(parse_stream(s), parse_policy(p)) for s in streams for p in policies]
    serve_one = serve_one or serve
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    done = finished(folder)
    (folder / MACHINE).write_text(json.dumps(machine(), indent=2), encoding="utf-8")
    stream_out = progress if progress is not None else sys.stderr
    results = []
    for index, (stream, policy) in enumerate(parsed):
        key = {"stream": stream.label, "policy": policy.label, "requests": config.requests}
        record = done.get(index)
        if record is not None and {k: record["result"][k] for k in key} != key:
            raise ServingConfigError(
                f"{folder / RUNS} holds another sweep (configuration {index} was "
                f"{record['result']['stream']} with {record['result']['policy']}); give a new --out"
            )
        if record is None:
            print(f"[{index + 1}/{len(parsed)}] {stream.label} {policy.label} ...",
                  file=stream_out, flush=True)  # fmt: skip
            result = serve_one(run_batch, stream, policy, config)
            append_record(folder, {"index": index, "result": result.to_dict()})
            print(f"    {_line(result)}", file=stream_out, flush=True)
        else:
            result = ServingResult(**record["result"])
        results.append(result)
    text = table_csv(results)
    atomic_write(folder / TABLE, lambda part: part.write_text(text, encoding="utf-8"))
    return results


def recommend(results: Sequence[ServingResult], slo_ms: float) -> list[Recommendation]:
    """Per stream, the policy with the fewest joules per request meeting ``slo_ms`` at p99.

    Args:
        results: a sweep's results.
        slo_ms: the tolerated p99 latency. Units: ms.
    """
    found = []
    for stream in dict.fromkeys(r.stream for r in results):
        mine = [r for r in results if r.stream == stream]
        ok = [r for r in mine if r.kept_up and r.latency_p99_ms <= slo_ms]
        worst = max(r.j_per_request for r in mine)
        single = [r for r in mine if parse_policy(r.policy).batch == 1]
        if not ok:
            closest = min(mine, key=lambda r: (not r.kept_up, r.latency_p99_ms))
            found.append(Recommendation(
                stream, slo_ms, None, None, None, None, closest.policy,
                f"{stream}: no policy meets p99 <= {slo_ms:g} ms while keeping up; the closest "
                f"is {closest.policy} (p99 {closest.latency_p99_ms:.1f} ms, "
                f"{closest.j_per_request:.4g} J/request). Raise the objective, or serve on "
                "faster hardware",
            ))  # fmt: skip
            continue
        best = min(ok, key=lambda r: r.j_per_request)
        vs_one = 1.0 - best.j_per_request / single[0].j_per_request if single else None
        vs_worst = 1.0 - best.j_per_request / worst
        found.append(Recommendation(
            stream, slo_ms, best.policy, best.j_per_request, round(vs_worst, 4),
            None if vs_one is None else round(vs_one, 4), None,
            f"{stream}: use {best.policy}: {best.j_per_request:.4g} J/request at p99 "
            f"{best.latency_p99_ms:.1f} ms, {vs_worst:.0%} less than the worst policy"
            + ("" if vs_one is None or best is single[0] else f", {vs_one:.0%} less than batch 1"),
        ))  # fmt: skip
    return found


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
        (r.stream, r.policy, f"{r.mean_batch:.1f}", f"{r.j_per_request:.4g}",
         "-" if r.j_per_request_above_idle is None else f"{r.j_per_request_above_idle:.4g}",
         f"{r.latency_p50_ms:.1f}", f"{r.latency_p99_ms:.1f}", f"{r.latency_max_ms:.1f}",
         f"{r.throughput_rps:.1f}", "yes" if r.kept_up else "NO")
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    kinds = sorted({r.energy_kind for r in results})
    return "\n".join([*lines, f"energy: {', '.join(kinds)} ({results[0].energy_source})"]) if (
        results) else "no results"  # fmt: skip


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
        for r in (r for r in results if r.stream == stream):
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
    kept = "" if r.kept_up else ", did NOT keep up"
    return (f"{r.j_per_request:.4g} J/request, p99 {r.latency_p99_ms:.1f} ms, "
            f"mean batch {r.mean_batch:.1f}{kept}")  # fmt: skip
