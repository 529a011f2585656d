"""The ``green-callbacks`` command line.

- ``green-callbacks meters``: which energy sources this machine has, which are
  chosen and why, and how to enable the missing ones.
- ``green-callbacks measure [--meter SPEC]... [--json] -- COMMAND [ARGS...]``:
  run a command and report its energy, the energy counterpart of ``time``.
  The report goes to stderr (``--json``: one JSON object on stdout), or to the
  file given with ``-o``. The exit code is the command's.
- ``green-callbacks demo [--epochs N] [--out DIR] [--meter SPEC]...``: train a
  small network on scikit-learn's digits with ``EnergyCallback`` and print
  accuracy and energy per epoch (needs ``pip install 'green-callbacks[demo]'``).
- ``green-callbacks report PATH...`` and ``advise PATH``: a run read back from any
  format, as an HTML page and as advice (:mod:`green_callbacks.analysis.cli`).
- ``green-callbacks serve-sweep``, ``tokens``, ``layers``, ``zoo``: inference
  energy under a request stream and where a model's joules go
  (:mod:`green_callbacks.serving.cli`, docs/inference.md).
- ``green-callbacks study stats RUNS.csv --factor COL [--by COL...]``: compare
  the levels of a factor over repeated runs with rank tests and effect sizes
  (needs ``pip install 'green-callbacks[study]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from green_callbacks import __version__
from green_callbacks._argtypes import number, positive_int
from green_callbacks._optional import missing_extra
from green_callbacks.analysis import cli as analysis_cli
from green_callbacks.core.atomic import atomic_write, check_target
from green_callbacks.core.records import WindowResult
from green_callbacks.core.tracker import DEFAULT_SAMPLE_INTERVAL_S, EnergyTracker
from green_callbacks.errors import EnergySourceWarning, GreenCallbacksError
from green_callbacks.meters.auto import detect
from green_callbacks.meters.spec import SPEC_FORMS, check_meters
from green_callbacks.serving import cli as serving_cli

EXIT_USAGE = 2
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``green-callbacks`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    with warnings.catch_warnings():
        warnings.showwarning = _shower(warnings.showwarning)
        try:
            result: int = args.handler(args)
        except GreenCallbacksError as err:
            print(f"green-callbacks: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        except BrokenPipeError:  # `green-callbacks meters --json | head`: the reader left
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    return result


def _shower(fallback: Callable[..., None]) -> Callable[..., None]:
    """Print this package's warnings as one ``green-callbacks: warning:`` line; others as usual."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if not issubclass(category, EnergySourceWarning):
            fallback(message, category, filename, lineno, file, line)
            return
        text = str(message).removeprefix("green_callbacks: ")
        print(f"green-callbacks: warning: {text}", file=sys.stderr)

    return show


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="green-callbacks", description="Energy metering for deep-learning work."
    )
    parser.add_argument("--version", action="version", version=f"green-callbacks {__version__}")
    sub = parser.add_subparsers(dest="command")

    meters = sub.add_parser(
        "meters", help="list energy sources on this machine and the choice made"
    )
    meters.add_argument(
        "--powercap-root", help="RAPL powercap folder (default /sys/class/powercap)"
    )
    meters.add_argument("--json", action="store_true", help="print JSON instead of text")
    meters.set_defaults(handler=_cmd_meters)

    measure = sub.add_parser(
        "measure",
        help="run a command and report its energy",
        description="Run COMMAND and report its energy per domain, duration and average power.",
    )
    measure.add_argument(
        "--meter",
        action="append",
        dest="meters",
        metavar="SPEC",
        help=f"energy source, repeatable (default auto); one of: {', '.join(SPEC_FORMS)}",
    )
    measure.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    measure.add_argument("-o", "--output", help="write the report to this file instead")
    measure.add_argument(
        "--interval", type=number(above=0.0), default=DEFAULT_SAMPLE_INTERVAL_S,
        help="sampling interval in s (default %(default)s)",
    )  # fmt: skip
    measure.add_argument(
        "--idle-baseline", type=number(at_least=0.0), default=0.0,
        help="seconds of idle power to measure first (default %(default)s)",
    )  # fmt: skip
    measure.add_argument(
        "--carbon-intensity", type=number(at_least=0.0), help="grid intensity, gCO2e/kWh"
    )
    measure.add_argument(
        "--pue", type=number(at_least=1.0), default=1.0,
        help="facility PUE for carbon figures (default %(default)s)",
    )  # fmt: skip
    measure.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    measure.set_defaults(handler=_cmd_measure)

    demo = sub.add_parser(
        "demo",
        help="train a small network on digits and show energy next to accuracy",
        description="Train a small CNN on scikit-learn's digits with EnergyCallback (Lightning).",
    )
    demo.add_argument(
        "--epochs", type=positive_int, default=5, help="training epochs (default %(default)s)"
    )
    demo.add_argument(
        "--out", default="runs/demo", help="folder for logs and the summary (default %(default)s)"
    )
    demo.add_argument(
        "--meter", action="append", dest="meters", metavar="SPEC", help="energy source (repeatable)"
    )
    demo.set_defaults(handler=_cmd_demo)

    hpo = sub.add_parser("hpo", help="energy-aware hyperparameter search (docs/hpo.md)")
    hpo_sub = hpo.add_subparsers(dest="hpo_command", required=True)
    compare = hpo_sub.add_parser(
        "compare",
        help="grid, random, TPE and GP searches compared on rounds and joules",
        description="Search Adam's hyperparameters for a small network on digits with each "
        "strategy, repeatedly, every trial metered: rounds to the best accuracy, energy to a "
        "target, trial-energy spread and the sampler's own cost (needs the optuna, torch, "
        "demo and study extras).",
    )
    compare.add_argument(
        "--strategies", nargs="+", default=["grid", "random", "tpe", "gp"],
        choices=("grid", "random", "tpe", "gp"), help="(default: all four)",
    )  # fmt: skip
    compare.add_argument("--model", choices=("linear", "poly", "cnn"), default="linear",
                         help="network (default %(default)s)")  # fmt: skip
    compare.add_argument("--params", type=int, choices=(3, 5), default=3,
                         help="Adam's lr, beta1, beta2 (3), or also eps and decay (5)")  # fmt: skip
    compare.add_argument("--repetitions", type=positive_int, default=3,
                         help="searches per strategy (default %(default)s)")  # fmt: skip
    compare.add_argument("--rounds", type=positive_int, default=32,
                         help="trials per search (default %(default)s)")  # fmt: skip
    compare.add_argument("--target", type=number(above=0.0), default=0.9,
                         help="accuracy to report the energy to reach (%(default)s)")  # fmt: skip
    compare.add_argument("--epochs", type=positive_int, default=2,
                         help="epochs per trial (default %(default)s)")  # fmt: skip
    compare.add_argument("--meter", action="append", dest="meters", metavar="SPEC",
                         help="energy source (repeatable; default auto)")  # fmt: skip
    compare.add_argument("--seed", type=int, default=0, help="base seed (default %(default)s)")
    compare.add_argument("--min-gain-per-kj", type=number(at_least=0.0), default=None,
                         help="stop a search once its best accuracy gains less than this "
                         "per kJ over its last 5 trials (0.01: a point per kJ; default: all "
                         "rounds)")  # fmt: skip
    compare.add_argument("--out", default="runs/hpo",
                         help="output folder (%(default)s); a rerun resumes there")  # fmt: skip
    compare.add_argument("--force-new", action="store_true",
                         help="--out holds another comparison: measure into a new folder beside "
                         "it (OUT-v2...) instead of refusing")  # fmt: skip
    compare.set_defaults(handler=_cmd_hpo_compare)

    study = sub.add_parser(
        "study", help="compare frameworks or settings over repeated runs (docs/studies.md)"
    )
    study_sub = study.add_subparsers(dest="study_command", required=True)
    run = study_sub.add_parser(
        "run",
        help="run a study file: every run in a fresh process, metered, resumable",
        description="Run every planned run of STUDY (a TOML file, docs/studies.md) not yet "
        "recorded in --out, each in a fresh process; a killed study resumes where it stopped.",
    )
    run.add_argument("study_file", metavar="STUDY", nargs="?", help="the study's TOML file")
    run.add_argument(
        "--preset", choices=("frameworks",),
        help="a ready-made study instead of a file: Lightning against Keras 3 on TensorFlow "
        "and torch, on a recommender, a CNN and a language model",
    )  # fmt: skip
    run.add_argument("--quick", action="store_true", help="the preset's short form")
    run.add_argument("--out", required=True, help="folder for the runs' records")
    run.add_argument(
        "--force-new", action="store_true",
        help="--out holds another study (or this one, to measure again): measure into a new "
        "folder beside it (OUT-v2, OUT-v3...) instead of refusing or resuming",
    )  # fmt: skip
    run.set_defaults(handler=_cmd_study_run)
    report = study_sub.add_parser(
        "report",
        help="tables and figures from a study's runs",
        description="Write DIR/report/: report.md (the levels side by side per metric, "
        "p (A12), the winner), comparisons.json/.csv, box plots per metric and the "
        "energy-against-quality bubble chart.",
    )
    report.add_argument("folder", metavar="DIR", help="what 'study run --out' wrote")
    report.add_argument("--factor", help="the factor compared (default: the study's only one)")
    report.set_defaults(handler=_cmd_study_report)
    stats = study_sub.add_parser(
        "stats",
        help="rank tests, effect sizes and ratios over a CSV of runs",
        description="Compare the levels of --factor on every numeric column of a CSV with one "
        "row per run: Mann-Whitney U (Wilcoxon when paired) or Kruskal-Wallis, Vargha-Delaney "
        "A12, each level's mean over the best (needs the 'study' extra: scipy).",
    )
    stats.add_argument("runs", help="CSV file, one row per run, a header line first")
    stats.add_argument("--factor", required=True, help="column holding the levels compared")
    stats.add_argument(
        "--by", nargs="+", default=[], metavar="COL", help="columns defining separate comparisons"
    )
    stats.add_argument(
        "--metric", nargs="+", dest="metrics", metavar="COL",
        help="metric columns (default: every other numeric column)",
    )  # fmt: skip
    stats.add_argument("--paired-by", metavar="COL", help="column pairing runs across levels")
    stats.add_argument(
        "--higher-is-better", nargs="+", metavar="COL",
        help="metrics where larger wins (default: accuracy, val_acc, quality, f1, score)",
    )  # fmt: skip
    stats.add_argument(
        "--correction", choices=("none", "bonferroni", "holm"), default="none",
        help="for multiple comparisons (default %(default)s)",
    )  # fmt: skip
    stats.add_argument(
        "--thresholds", choices=("vargha-delaney", "study"), default="vargha-delaney",
        help="A12 magnitudes: 0.56/0.64/0.71 or the ICSE study's 0.6/0.7/0.8 "
        "(default %(default)s)",
    )  # fmt: skip
    stats.add_argument(
        "--alpha", type=number(above=0.0), default=0.05,
        help="significance level for naming a winner (default %(default)s)",
    )  # fmt: skip
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=_cmd_study_stats)
    serving_cli.add_parsers(sub)
    analysis_cli.add_parsers(sub)
    return parser


def _cmd_meters(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EnergySourceWarning)  # the listing says it all
        selection = detect(powercap_root=args.powercap_root)
    try:
        domains = [d for m in selection.meters for d in m.domains()]
        if args.json:
            payload = {
                "findings": [f.__dict__ for f in selection.findings],
                "domains": [d.to_dict() for d in domains],
            }
            print(json.dumps(payload, indent=2))
            return 0
        print("Energy sources on this machine:")
        print(selection.explain())
        print("\nDomains that will be metered:")
        for d in domains:
            part = f", part of {d.part_of}" if d.part_of else ""
            print(f"  {d.name:<14} {d.label()}{part}  [{d.detail}]")
    finally:
        for meter in selection.meters:
            meter.close()
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print(
            "green-callbacks measure: no command given; usage: green-callbacks measure -- COMMAND",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.output:
        check_target(Path(args.output))  # refused now, before the command runs
    tracker = EnergyTracker(
        args.meters or "auto",
        sample_interval_s=args.interval,
        idle_baseline_s=args.idle_baseline,
        carbon_intensity_g_per_kwh=args.carbon_intensity,
        pue=args.pue,
    )
    tracker.start()
    try:
        exit_code = _run(command)
    finally:
        totals = tracker.stop()
    report = _report(command, exit_code, totals, tracker)
    _emit(report, totals, args)
    return exit_code


def _cmd_demo(args: argparse.Namespace) -> int:
    import logging
    import warnings

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"green-callbacks demo: --out {out} is a file; give a folder", file=sys.stderr)
        return EXIT_USAGE
    check_meters(args.meters or ["auto"])  # before the slow imports
    print(
        f"green-callbacks demo: a small CNN learns scikit-learn's digits for {args.epochs} "
        "epochs with Lightning, energy next to accuracy. Loading PyTorch and Lightning...",
        flush=True,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorBoard may load TensorFlow
    for framework in ("lightning", "torch", "tensorboard", "tensorflow"):  # their advice, not ours
        warnings.filterwarnings("ignore", module=framework)
    try:
        from green_callbacks.lightning import demo
    except ImportError as err:
        raise missing_extra(err, "demo", purpose="green-callbacks demo") from err
    for name in ("lightning.pytorch", "lightning.fabric"):  # set on import: quiet them after it
        logging.getLogger(name).setLevel(logging.WARNING)
    config = demo.DemoConfig(epochs=args.epochs, out=Path(args.out), meters=args.meters or ["auto"])
    demo.run_demo(config, sys.stdout)
    return 0


def _cmd_hpo_compare(args: argparse.Namespace) -> int:
    try:
        from green_callbacks import hpo
    except ImportError as err:
        raise missing_extra(err, "optuna", purpose="green-callbacks hpo") from err
    check_meters(args.meters or ["auto"])
    config = hpo.CompareConfig(
        strategies=args.strategies, model=args.model, params=args.params,
        repetitions=args.repetitions, rounds=args.rounds, target=args.target,
        epochs=args.epochs, meters=args.meters or ["auto"], seed=args.seed,
        min_gain_per_kj=args.min_gain_per_kj,
    )  # fmt: skip
    summary, out = hpo.compare(config, Path(args.out), force_new=args.force_new)
    print(hpo.format_summary(summary, config.target))
    print(f"results: {out / 'results.json'}, {out / 'searches.csv'} (runs: {out / 'runs.jsonl'})")
    print(f"figure:  {out / 'best_so_far.png'}")
    return 0


def _cmd_study_run(args: argparse.Namespace) -> int:
    from green_callbacks.study import definition, runner

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"green-callbacks study run: --out {out} is a file; give a folder", file=sys.stderr)
        return EXIT_USAGE
    if (args.study_file is None) == (args.preset is None):
        print("green-callbacks study run: give a STUDY file or --preset, one of them",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if args.quick and args.preset is None:
        print("green-callbacks study run: --quick goes with --preset", file=sys.stderr)
        return EXIT_USAGE
    study = (definition.load(args.study_file) if args.preset is None
             else definition.preset(args.preset, quick=args.quick))  # fmt: skip
    out, records = runner.run_study(study, out, force_new=args.force_new)
    failed = sum(record["status"] != "ok" for record in records)
    print(
        f"{len(records)} runs recorded in {out / runner.TABLE}"
        + (f" ({failed} failed: see their error in {out / runner.RUNS})" if failed else ""),
        file=sys.stderr,
    )
    return 0


def _cmd_study_report(args: argparse.Namespace) -> int:
    try:
        from green_callbacks.study.report import build_report
    except ImportError as err:
        raise missing_extra(err, "study", purpose="green-callbacks study report") from err
    out = build_report(args.folder, factor=args.factor)
    print(f"report: {out / 'report.md'}")
    for figure in sorted(out.glob("*.png")):
        print(f"figure: {figure}")
    return 0


def _cmd_study_stats(args: argparse.Namespace) -> int:
    try:
        from green_callbacks.study import stats
    except ImportError as err:
        raise missing_extra(err, "study", purpose="green-callbacks study") from err
    everything = stats.read_runs(args.runs)
    rows = stats.measured(everything)
    if len(rows) < len(everything):
        print(f"left out {len(everything) - len(rows)} warm-up or failed runs", file=sys.stderr)
    options: dict[str, Any] = {}
    if args.higher_is_better:
        options["higher_is_better"] = args.higher_is_better
    comparisons = stats.compare(
        rows, args.factor, by=args.by, metrics=args.metrics, paired_by=args.paired_by,
        thresholds=args.thresholds, correction=args.correction, alpha=args.alpha,
        source=args.runs, **options,
    )  # fmt: skip
    rho = stats.correlations(rows)
    estimated = any(str(row.get("kind", "")).startswith("estimated") for row in rows)
    if args.json:
        report = {
            "comparisons": [c.to_dict() for c in comparisons],
            "correlations": rho,
            "estimated": estimated,
        }
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        print(stats.format_table(comparisons, rho, estimated))
    return 0


def _run(command: list[str]) -> int:
    try:
        child = subprocess.Popen(command)
    except FileNotFoundError:
        print(f"green-callbacks measure: command not found: {command[0]}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except PermissionError:
        print(f"green-callbacks measure: cannot execute: {command[0]}", file=sys.stderr)
        return EXIT_NOT_EXECUTABLE

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as shells report


def _report(
    command: list[str], exit_code: int, totals: WindowResult, tracker: EnergyTracker
) -> dict[str, Any]:
    report = {"command": command, "exit_code": exit_code, **totals.to_dict()}
    report.pop("level")
    report.pop("name")
    report["findings"] = [f.__dict__ for f in tracker.findings]
    return report


def _emit(report: dict[str, Any], totals: WindowResult, args: argparse.Namespace) -> None:
    text = json.dumps(report, indent=2) if args.json else _human(report, totals)
    if args.output:
        try:
            atomic_write(args.output, lambda part: part.write_text(text + "\n", encoding="utf-8"))
            return
        except (OSError, GreenCallbacksError) as err:  # the command ran: keep its figures
            print(f"green-callbacks: error: cannot write -o {args.output} ({err}); "
                  "the report follows on stderr", file=sys.stderr)  # fmt: skip
            print(text, file=sys.stderr)
            return
    stream: TextIO = sys.stdout if args.json else sys.stderr
    print(text, file=stream)


def _human(report: dict[str, Any], totals: WindowResult) -> str:
    lines = [
        f"green-callbacks: energy of {' '.join(report['command'])}",
        f"  energy      {totals.energy_j:12.3f} J   ({totals.kind})",
        f"  duration    {totals.duration_s:12.3f} s",
        f"  avg power   {totals.avg_power_w:12.3f} W",
    ]
    if totals.carbon_g is not None:
        lines.append(f"  carbon      {totals.carbon_g:12.4f} gCO2e")
    if totals.above_idle_j is not None:
        lines.append(f"  above idle  {totals.above_idle_j:12.3f} J")
    for domain, joules in zip(totals.layout.domains, totals.values):
        part = f", part of {domain.part_of}" if domain.part_of else ""
        lines.append(f"  {domain.name:<11} {joules:12.3f} J   {domain.label()}{part}")
    lines.extend(f"  note: {note}" for note in totals.notes)
    lines.append(f"  exit code   {report['exit_code']:>12}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
