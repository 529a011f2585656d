"""``green-callbacks advise`` and ``report``: a run's figures in, the changes to make and a page
to look at out."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from green_callbacks._argtypes import number, positive_int
from green_callbacks.core.atomic import atomic_write

if TYPE_CHECKING:
    from green_callbacks.analysis import Finding, RunRecord

ADVICE_TEXT = "advice.md"
ADVICE_JSON = "advice.json"


def add_parsers(sub: Any) -> None:
    """Register ``advise`` on the main parser.

    Args:
        sub: the main parser's subparsers action.
    """
    advise = sub.add_parser(
        "advise",
        help="which energy patterns apply to a run, with the evidence and the change to make",
        description="Read a run (a run or output folder, searched 3 folders deep for the "
        "summary and the loggers' folders, an energy summary, a trace, a CSVLogger file or a "
        "trainer_state.json; several paths are joined as one run) and judge the energy "
        "patterns P1-P8 and diminishing returns on its figures: applies / does not apply / "
        "cannot tell, the evidence, an estimated saving and the change to make "
        "(docs/advisor.md). Writes advice.md and advice.json beside the run.",
    )
    advise.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="run or output folder, or file; several: parts of one run, joined",
    )  # fmt: skip
    advise.add_argument("--patience", type=positive_int, default=3, help="epochs per gain window")
    advise.add_argument(
        "--flat-share",
        type=number(above=0.0),
        default=0.1,
        help="flat: gain per kJ below this share of the early gain (0.1)",
    )
    advise.add_argument(
        "--min-gain-per-kj",
        type=number(at_least=0.0),
        help="a fixed gain per kJ instead of --flat-share",
    )
    advise.add_argument(
        "--long-run-s",
        type=number(above=0.0),
        default=3600.0,
        help="runs this long should checkpoint, s (3600)",
    )
    advise.add_argument(
        "--data-wait-share",
        type=number(above=0.0),
        default=0.2,
        help="data-wait share of step time that flags the pipeline (0.2)",
    )
    advise.add_argument(
        "--leak-mib",
        type=number(above=0.0),
        default=64.0,
        help="memory growth per epoch counted as a leak, MiB (64)",
    )
    advise.add_argument("--json", action="store_true", help="print the findings as JSON")
    advise.set_defaults(handler=_cmd_advise)

    report = sub.add_parser(
        "report",
        help="an HTML page and PNG figures of one or more runs, with the advice",
        description="Read each PATH (a run folder, an energy summary, a trace, a CSVLogger file, "
        "a trainer_state.json, a TensorBoard log, mlflow:RUN_ID@URI; or a compression report, a "
        "serving sweep, a study or a search comparison) and write --out/report.html (figures "
        "embedded: it opens from disk with no network) and the figures as PNG files "
        "(docs/report.md).",
    )
    report.add_argument("paths", nargs="+", metavar="PATH", help="runs to show")
    report.add_argument("--out", default="runs/report", help="output folder (default %(default)s)")
    report.set_defaults(handler=_cmd_report)

    card = sub.add_parser(
        "card",
        help="a run's training energy as a Markdown 'Energy' section for a model card",
        description="Print the Energy section (energy, duration, power, provenance, sources, "
        "carbon) of a run's summary: a summary JSON or a run folder holding one.",
    )
    card.add_argument("path", help="summary JSON or run folder")
    card.set_defaults(handler=_cmd_card)


def _cmd_advise(args: argparse.Namespace) -> int:
    from green_callbacks.analysis import Thresholds, advise, format_advice, read_run

    run = read_run(*args.paths)
    thresholds = Thresholds(
        patience=args.patience,
        flat_share=args.flat_share,
        min_gain_per_kj=args.min_gain_per_kj,
        long_run_s=args.long_run_s,
        data_wait_share=args.data_wait_share,
        leak_mib_per_epoch=args.leak_mib,
    )
    findings = advise(run, thresholds)
    read = Path(run.source)  # a run_dir of several runs: the version folder read
    folder = read if read.is_dir() else Path(args.paths[0]).parent
    written, failures = write_advice(run, findings, folder)
    if args.json:
        print(json.dumps(_payload(run, findings), indent=2))
        return 0
    print(format_advice(findings))
    if run.notes:
        print("\nnotes on this run: " + "; ".join(run.notes))
    if run.missing:
        print("\nmissing from this run: " + "; ".join(run.missing))
    for failure in failures:
        print(f"green-callbacks advise: {failure}")
    if written:
        print(f"written: {', '.join(str(p) for p in written)}")
    return 0


def _payload(run: RunRecord, findings: Sequence[Finding]) -> dict[str, Any]:
    return {
        "source": run.source,
        "energy_kind": run.energy_kind,
        "missing": run.missing,
        "findings": [f.to_dict() for f in findings],
    }


def write_advice(
    run: RunRecord, findings: Sequence[Finding], folder: Path
) -> tuple[list[Path], list[str]]:
    """Write ``advice.md`` and ``advice.json`` into ``folder``: the files written, and the
    writes that failed (said, never raised: the advice is also printed).

    Args:
        run: the run judged.
        findings: what :func:`~green_callbacks.analysis.advise` returned.
        folder: where the files go.
    """
    from green_callbacks.analysis import format_advice

    kind = run.energy_kind or "provenance unknown"
    body = format_advice(findings)
    text = f"# Energy advice for {run.source}\n\nenergy: {kind}\n\n```\n{body}\n```\n"
    written, failures = [], []
    for name, content in (
        (ADVICE_TEXT, text),
        (ADVICE_JSON, json.dumps(_payload(run, findings), indent=2) + "\n"),
    ):
        try:
            _write(folder / name, content)
            written.append(folder / name)
        except OSError as err:
            failures.append(f"could not write {folder / name} ({err})")
    return written, failures


def advise_run_folder(folder: Path) -> None:
    """Print the advice for a run folder and write it there (``EnergyCallback(advise=True)``).

    Args:
        folder: the run folder.
    """
    from green_callbacks.analysis import RunReadError, advise, format_advice, read_run

    try:
        run = read_run(folder)
    except RunReadError as err:  # nothing was written there: say so, never fail the fit
        print(f"green_callbacks: no energy advice: {err}")
        return
    findings = advise(run)
    written, failures = write_advice(run, findings, folder)
    print(f"green_callbacks: energy advice for {folder}:\n{format_advice(findings)}")
    for failure in failures:
        print(f"green_callbacks: {failure}")
    if written:
        print(f"green_callbacks: advice written to {written[0]}")


def _cmd_card(args: argparse.Namespace) -> int:
    from green_callbacks.analysis.run import SUMMARY_NAMES, RunReadError
    from green_callbacks.core.card import energy_card
    from green_callbacks.core.readback import parse_json
    from green_callbacks.core.run_folder import newest_version

    where = Path(args.path)

    def summaries(folder: Path) -> list[Path]:
        return [folder / n for n in SUMMARY_NAMES if (folder / n).is_file()]

    found = [where] if where.is_file() else summaries(where)
    newest = newest_version(where) if not found else None
    if newest is not None:  # a run_dir of several runs: the newest, as report and advise read
        found = summaries(newest)
    try:
        summary = parse_json(found[0].read_text(encoding="utf-8")) if found else None
    except (OSError, ValueError) as err:
        raise RunReadError(f"{found[0]} is not a readable energy summary ({err})") from err
    if not isinstance(summary, dict):
        raise RunReadError(
            f"{where}: no energy summary ({', '.join(SUMMARY_NAMES)}, or a summary JSON file)"
        )
    print(energy_card(summary))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from green_callbacks.analysis import RunReadError, read_run
    from green_callbacks.analysis.report import build_report
    from green_callbacks.analysis.results import read_result

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, results = [], []
    for path in args.paths:
        result = read_result(path, out)
        if result is not None:
            results.append(result)
        try:
            runs.append(read_run(path))
        except RunReadError:
            if result is None:
                raise
    page = build_report(runs, out, results=results)
    for run in runs:
        if run.missing:
            print(f"{run.source}: missing: {'; '.join(run.missing)}")
    print(f"report: {page}")
    for figure in sorted(Path(args.out).glob("*.png")):
        print(f"figure: {figure}")
    return 0


def _write(path: Path, content: str) -> None:
    atomic_write(path, lambda part: part.write_text(content, encoding="utf-8"))
