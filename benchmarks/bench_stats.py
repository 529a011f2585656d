"""``study stats`` against the number of runs per level: the time stays seconds at 10^5.

A table of two levels (two frameworks, energy and duration per run, shifted by
a small effect, with ties as real meters give) is written as a CSV with 10^2,
10^3, 10^4 and 10^5 runs per level, and ``green-callbacks study stats`` is timed
on it end to end (reading the CSV, the tests, the effect sizes, the table). The
baseline, in the same run, is scipy's Mann-Whitney test alone on the same
values: the ratio is what the command adds to the test it reports.

    .venv/bin/python benchmarks/bench_stats.py [--quick] [--json]
"""

from __future__ import annotations

import contextlib
import io
import random
import tempfile
import time
from pathlib import Path

from _common import arguments, emit, median

from green_callbacks import cli

SIZES = (100, 1000, 10_000, 100_000)
QUICK_SIZES = (100, 1000, 10_000)
TARGET_S = 10.0
"""The issue's target: 10^5 runs per level in seconds."""


def write_table(path: Path, runs: int, seed: int = 0) -> dict[str, list[float]]:
    """Two levels of ``runs`` rows each; the energy values per level, for the baseline."""
    rng = random.Random(seed)
    values: dict[str, list[float]] = {"lightning": [], "keras": []}
    lines = ["framework,workload,energy_j,duration_s,kind"]
    for level, shift in (("lightning", 0.0), ("keras", 0.5)):
        for _ in range(runs):
            energy = round(rng.gauss(100.0 + shift, 5.0), 1)  # 0.1 J resolution: ties
            values[level].append(energy)
            lines.append(f"{level},cnn,{energy},{energy / 50:.4f},estimated")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return values


def time_command(table: Path) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["study", "stats", str(table), "--factor", "framework", "--by",
                         "workload"])  # fmt: skip
    if code != 0:
        raise SystemExit(f"study stats failed on {table} (exit {code})")
    return time.perf_counter() - started


def time_scipy(values: dict[str, list[float]]) -> float:
    from scipy.stats import mannwhitneyu

    started = time.perf_counter()
    mannwhitneyu(values["lightning"], values["keras"], alternative="two-sided")
    return time.perf_counter() - started


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    sizes = QUICK_SIZES if args.quick else SIZES
    rounds = 2 if args.quick else 3
    folder = Path(tempfile.mkdtemp(prefix="gc-bench-stats-"))
    result = {}
    for runs in sizes:
        table = folder / f"runs_{runs}.csv"
        values = write_table(table, runs)
        command, scipy_alone = [], []
        for _ in range(rounds):  # interleaved
            command.append(time_command(table))
            scipy_alone.append(time_scipy(values))
        result[str(runs)] = {"command_s": median(command), "scipy_test_s": median(scipy_alone)}
    lines = [f"{'runs/level':>10}{'study stats s':>15}{'scipy U test s':>16}"]
    lines += [f"{runs:>10}{r['command_s']:>15.3f}{r['scipy_test_s']:>16.4f}"
              for runs, r in result.items()]  # fmt: skip
    largest = result[str(sizes[-1])]["command_s"]
    verdict = "within" if largest < TARGET_S else "OVER"
    lines.append(f"(two levels, two metrics, {rounds} rounds; {sizes[-1]} runs per level: "
                 f"{largest:.2f} s, {verdict} the {TARGET_S:g} s target)")  # fmt: skip
    emit(result, lines, args.json)


if __name__ == "__main__":
    main()
