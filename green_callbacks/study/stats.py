"""Compare the runs of a study: rank tests, effect sizes, ratios, on any table of runs.

A table has one row per run. The ``factor`` column holds the levels compared
(``lightning``, ``keras-torch``...), the ``by`` columns split the table into
comparisons (one per workload and phase, say), and every other numeric column
is a metric (``energy_cpu_j``, ``duration_s``, ``accuracy``...). For each
comparison and metric :func:`compare` gives, per level, n, mean, median and
standard deviation, and across levels:

- two levels: the two-sided Mann-Whitney U test (scipy chooses exact or asymptotic), or the
  Wilcoxon signed-rank test when the runs are paired; the Vargha-Delaney
  A12 of the first level over the second (the probability that a run of the
  first level has the larger value, ties counted half), from the U statistic,
  and its magnitude;
- more levels: Kruskal-Wallis with its eta squared, and every pair as above;
- each level's mean over the best level's mean (lower is better unless the
  metric is named in ``higher_is_better``), and the winner when the test is
  significant at ``alpha``;
- optionally p-values corrected for the number of comparisons (Bonferroni,
  Holm).

The tests are scipy's. Example, two frameworks' energy in joules:

    >>> rows = [{"framework": f, "energy_j": e} for f, e in
    ...         [("a", 10), ("a", 11), ("a", 12), ("b", 20), ("b", 21), ("b", 22)]]
    >>> [c] = compare(rows, factor="framework")
    >>> c.test, round(c.p_value, 3), c.a12, c.magnitude, c.best, c.ratio
    ('mann-whitney-u (exact)', 0.1, 0.0, 'large', 'a', {'a': 1.0, 'b': 1.909...})
    >>> c.winner is None  # three runs a side cannot reach p < 0.05: repeat them (10 is usual)
    True
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from green_callbacks._optional import require
from green_callbacks.errors import ConfigError

THRESHOLDS = {"vargha-delaney": (0.56, 0.64, 0.71), "study": (0.6, 0.7, 0.8)}
"""A12 magnitude thresholds (small, medium, large): Vargha and Delaney's own (2000), or the
0.6 / 0.7 / 0.8 of Georgiou et al.'s framework study (ICSE 2022)."""

CORRECTIONS = ("none", "bonferroni", "holm")
HIGHER_IS_BETTER = ("accuracy", "val_acc", "quality", "f1", "score")
"""Metrics where a larger value wins (every other metric: energy, time... lower wins)."""


RUN_COLUMNS = ("index", "block", "repetition", "warmup", "status", "exit_code", "kind", "idle_w")
"""The study runner's bookkeeping columns: never metrics unless named with ``metrics``."""


class StudyDataError(ConfigError):
    """A table of runs that cannot be compared as asked; the message says what to fix."""


@dataclass(frozen=True)
class LevelStats:
    """One level's runs for one metric.

    Attributes:
        n: runs with a value.
        mean: their mean.
        median: their median.
        std: their sample standard deviation (0 for one run).
    """

    n: int
    mean: float
    median: float
    std: float


@dataclass(frozen=True)
class PairTest:
    """Two levels compared.

    Attributes:
        first: the first level (A12 is its probability of the larger value).
        second: the second level.
        test: the test's name (``mann-whitney-u (exact)``, ``wilcoxon``...).
        p_value: two-sided p-value (corrected when a correction was asked for).
        a12: Vargha-Delaney A12 of ``first`` over ``second``.
        magnitude: ``negligible``, ``small``, ``medium`` or ``large``.
    """

    first: str
    second: str
    test: str
    p_value: float
    a12: float
    magnitude: str


@dataclass(frozen=True)
class Comparison:
    """The levels of the factor compared on one metric, within one ``by`` group.

    Attributes:
        by: the values of the ``by`` columns that define this group.
        metric: the metric compared.
        levels: per level, its statistics.
        test: the test across all levels (Mann-Whitney U, Wilcoxon, Kruskal-Wallis).
        p_value: its p-value (corrected when a correction was asked for).
        a12: with two levels, A12 of the first over the second; else None.
        magnitude: with two levels, A12's magnitude; else None.
        eta_squared: with more levels, Kruskal-Wallis's effect size; else None.
        winner: the best level when ``p_value < alpha``, else None.
        ratio: each level's mean over the best level's mean (None when that is 0).
        pairs: every pair of levels (one entry with two levels).
        higher_is_better: whether a larger value wins for this metric.
        best: the level with the best mean, significant or not.
    """

    by: dict[str, str]
    metric: str
    levels: dict[str, LevelStats]
    test: str
    p_value: float
    a12: float | None
    magnitude: str | None
    eta_squared: float | None
    winner: str | None
    ratio: dict[str, float | None]
    pairs: list[PairTest] = field(default_factory=list)
    higher_is_better: bool = False
    best: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)


def read_runs(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file of runs (one per run, a header line first).

    Args:
        path: the CSV file.

    Raises:
        StudyDataError: the file cannot be read or has no rows.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise StudyDataError(f"cannot read the runs in {path}: {err}") from err
    if not rows:
        raise StudyDataError(f"{path} has no runs: a header line and one row per run expected")
    return rows


def measured(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows that count: warm-up runs (``warmup`` 1) and failed runs (``status`` not
    ``ok``) of the study runner's table left out; other tables pass unchanged.

    Args:
        rows: one mapping per run.
    """
    return [
        row for row in rows
        if str(row.get("warmup", "0")).strip() in ("", "0") and row.get("status", "ok") == "ok"
    ]  # fmt: skip


def a12(first: Sequence[float], second: Sequence[float]) -> float:
    """Vargha-Delaney A12: P(a run of ``first`` > a run of ``second``) + half the ties.

    It is the Mann-Whitney U statistic of ``first`` over the number of pairs.

    Args:
        first: one level's values.
        second: the other level's values.

    Example:
        >>> a12([3, 4, 5], [1, 2, 3])
        0.944...
    """
    stats = require("scipy.stats", "study", purpose="Study statistics")
    u = stats.mannwhitneyu(first, second, alternative="two-sided", method="asymptotic").statistic
    return float(u) / (len(first) * len(second))


def magnitude(value: float, thresholds: str = "vargha-delaney") -> str:
    """The size of an A12: negligible, small, medium or large (symmetric around 0.5).

    Args:
        value: the A12.
        thresholds: ``vargha-delaney`` (0.56/0.64/0.71) or ``study`` (0.6/0.7/0.8).

    Example:
        >>> magnitude(0.35), magnitude(0.35, "study"), magnitude(0.52)
        ('medium', 'small', 'negligible')
    """
    if thresholds not in THRESHOLDS:
        raise StudyDataError(f"thresholds must be one of {sorted(THRESHOLDS)}, got {thresholds!r}")
    distance = max(value, 1.0 - value)
    small, medium, large = THRESHOLDS[thresholds]
    if distance >= large:
        return "large"
    if distance >= medium:
        return "medium"
    return "small" if distance >= small else "negligible"


def compare(
    rows: Sequence[Mapping[str, Any]],
    factor: str,
    *,
    by: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    paired_by: str | None = None,
    higher_is_better: Iterable[str] = HIGHER_IS_BETTER,
    thresholds: str = "vargha-delaney",
    correction: str = "none",
    alpha: float = 0.05,
    source: str = "the runs",
    order: Sequence[str] | None = None,
) -> list[Comparison]:
    """Compare the levels of ``factor`` on every metric, within every ``by`` group.

    Args:
        rows: one mapping per run (a CSV's rows: numbers may be text).
        factor: the column whose values are the levels compared.
        by: columns whose values define separate comparisons.
        metrics: the metric columns; default every other column whose values
            are all numbers.
        paired_by: a column that pairs runs across levels (the same seed, the
            same block): the Wilcoxon signed-rank test instead of Mann-Whitney.
        higher_is_better: metrics where the larger value wins.
        thresholds: A12 magnitudes: ``vargha-delaney`` or ``study``.
        correction: ``none``, ``bonferroni`` or ``holm``, over all comparisons.
        alpha: significance level for naming a winner.
        source: how errors name the table (its file).
        order: the levels in the order to show them (default: as they first appear).

    Raises:
        StudyDataError: a named column is missing, a metric value is not a
            number, or the factor has fewer than two levels in a group.
    """
    if correction not in CORRECTIONS:
        raise StudyDataError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    magnitude(0.5, thresholds)  # checks the name
    if not rows:
        raise StudyDataError(f"{source} has no runs")
    columns = list(rows[0])
    for name in [factor, *by, *([paired_by] if paired_by else []), *(metrics or [])]:
        if name not in columns:
            raise StudyDataError(
                f"{source} has no column {name!r}; its columns are: {', '.join(columns)}"
            )
    exclude = {factor, *by, paired_by, *RUN_COLUMNS}
    chosen = list(metrics) if metrics else _numeric_columns(rows, exclude=exclude)
    if not chosen:
        raise StudyDataError(
            f"{source} has no numeric metric column besides {factor!r} and {list(by)}; "
            "name one with --metric"
        )
    higher = set(higher_is_better)
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(str(row[b]) for b in by), []).append(row)
    results = []
    for key, group in groups.items():
        for metric in chosen:
            results.append(
                _compare_one(
                    dict(zip(by, key)),
                    group,
                    factor,
                    metric,
                    paired_by,
                    metric in higher,
                    thresholds,
                    alpha,
                    source,
                    order,
                )
            )
    return _corrected(results, correction, alpha) if correction != "none" else results


def _numeric_columns(rows: Sequence[Mapping[str, Any]], exclude: set[str | None]) -> list[str]:
    found = []
    for name in rows[0]:
        if name in exclude:
            continue
        try:
            [float(row[name]) for row in rows if str(row[name]).strip() != ""]
        except (TypeError, ValueError):
            continue
        found.append(name)
    return found


def _values(
    group: Sequence[Mapping[str, Any]], factor: str, metric: str, source: str
) -> dict[str, list[tuple[int, float]]]:
    """Per level, (row index, value), in the order levels first appear; blanks skipped."""
    levels: dict[str, list[tuple[int, float]]] = {}
    for index, row in enumerate(group):
        text = str(row[metric]).strip()
        levels.setdefault(str(row[factor]), [])
        if text == "":
            continue
        try:
            value = float(text)
        except ValueError:
            raise StudyDataError(
                f"{source}: column {metric!r} has {text!r}, not a number (a run of "
                f"{row[factor]!r}); fix the value, leave it empty, or leave the column out "
                "with --metric"
            ) from None
        if not math.isfinite(value):
            raise StudyDataError(f"{source}: column {metric!r} has {text!r}; use finite numbers")
        levels[str(row[factor])].append((index, value))
    return levels


def _compare_one(
    by: dict[str, str],
    group: Sequence[Mapping[str, Any]],
    factor: str,
    metric: str,
    paired_by: str | None,
    higher: bool,
    thresholds: str,
    alpha: float,
    source: str,
    order: Sequence[str] | None = None,
) -> Comparison:
    stats = require("scipy.stats", "study", purpose="Study statistics")
    levels = _values(group, factor, metric, source)
    if order is not None:
        rank = {str(level): i for i, level in enumerate(order)}
        levels = dict(sorted(levels.items(), key=lambda item: rank.get(item[0], len(rank))))
    where = f" where {by}" if by else ""
    if len(levels) < 2:
        raise StudyDataError(
            f"{source}: {factor!r} has one level ({', '.join(levels)}){where}; a comparison "
            "needs two or more"
        )
    samples = {name: [v for _, v in pairs] for name, pairs in levels.items()}
    for name, values in samples.items():
        if len(values) < 2:
            raise StudyDataError(
                f"{source}: level {name!r} of {factor!r} has {len(values)} run(s) with "
                f"{metric!r}{where}; repeat each level at least twice (the method's default is 10)"
            )
    summary = {
        name: LevelStats(
            len(v), statistics.fmean(v), statistics.median(v),
            statistics.stdev(v) if len(v) > 1 else 0.0,
        )
        for name, v in samples.items()
    }  # fmt: skip
    names = list(samples)
    pairing = _pairing(group, factor, paired_by, levels) if paired_by else None
    pairs = [
        _pair(a, b, samples, pairing, thresholds)
        for a, b in combinations(names, 2)
    ]  # fmt: skip
    eta = None
    if len(names) == 2:
        test, p_value = pairs[0].test, pairs[0].p_value
    elif len({v for values in samples.values() for v in values}) == 1:
        test, p_value, eta = "kruskal-wallis (all values equal)", 1.0, 0.0  # no ranks to test
    else:
        result = stats.kruskal(*samples.values())
        n, k = sum(len(v) for v in samples.values()), len(samples)
        test, p_value = "kruskal-wallis", float(result.pvalue)
        eta = max((float(result.statistic) - k + 1) / (n - k), 0.0) if n > k else None
    best = (max if higher else min)(names, key=lambda name: summary[name].mean)
    best_mean = summary[best].mean
    ratio = {  # none when the best mean is 0 (above-idle figures can be): no ratio to take
        name: (summary[name].mean / best_mean if best_mean else None) for name in names
    }
    return Comparison(
        by=by, metric=metric, levels=summary, test=test, p_value=p_value,
        a12=pairs[0].a12 if len(names) == 2 else None,
        magnitude=pairs[0].magnitude if len(names) == 2 else None,
        eta_squared=eta, winner=best if p_value < alpha else None, ratio=ratio, pairs=pairs,
        higher_is_better=higher, best=best,
    )  # fmt: skip


def _pairing(
    group: Sequence[Mapping[str, Any]],
    factor: str,
    paired_by: str,
    levels: dict[str, list[tuple[int, float]]],
) -> dict[str, dict[str, float]]:
    """Per level, the value of each pair key (a run of every level shares one)."""
    return {name: {str(group[i][paired_by]): v for i, v in pairs} for name, pairs in levels.items()}


def _pair(
    first: str,
    second: str,
    samples: dict[str, list[float]],
    pairing: dict[str, dict[str, float]] | None,
    thresholds: str,
) -> PairTest:
    stats = require("scipy.stats", "study", purpose="Study statistics")
    x, y = samples[first], samples[second]
    effect = a12(x, y)
    if pairing is not None:
        keys = sorted(set(pairing[first]) & set(pairing[second]))
        if len(keys) < 2:
            raise StudyDataError(
                f"levels {first!r} and {second!r} share {len(keys)} pair key(s); paired tests "
                "need runs of both levels with the same --paired-by value"
            )
        xs, ys = [pairing[first][k] for k in keys], [pairing[second][k] for k in keys]
        if all(a == b for a, b in zip(xs, ys)):
            p_value, test = 1.0, "wilcoxon (all differences zero)"
        else:
            p_value, test = float(stats.wilcoxon(xs, ys).pvalue), "wilcoxon"
    else:
        method = mann_whitney_method(x, y)
        if x == y or len(set(x) | set(y)) == 1:
            p_value = 1.0
        else:  # scipy chooses the method ("auto"); the label says which it chose
            p_value = float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)
        test = f"mann-whitney-u ({method})"
    return PairTest(first, second, test, p_value, effect, magnitude(effect, thresholds))


EXACT_UP_TO = 8
"""scipy's rule for ``mannwhitneyu(method="auto")``: exact when no values tie and one
sample has at most this many values (its cost grows with the product of the sizes),
asymptotic otherwise."""


def mann_whitney_method(x: Sequence[float], y: Sequence[float]) -> str:
    """Which p-value scipy's ``mannwhitneyu`` computes by default for these samples.

    Example:
        >>> mann_whitney_method([1, 2, 3], [4, 5, 6]), mann_whitney_method([1, 2], [2, 3])
        ('exact', 'asymptotic')
        >>> mann_whitney_method(range(9), range(10, 19))
        'asymptotic'
    """
    tied = len(set(x) | set(y)) < len(x) + len(y)
    return "exact" if not tied and min(len(x), len(y)) <= EXACT_UP_TO else "asymptotic"


def _corrected(results: list[Comparison], correction: str, alpha: float) -> list[Comparison]:
    """The same comparisons with p-values corrected over all of them (and their pairs)."""
    flat = [c.p_value for c in results]
    adjusted = adjust(flat, correction)
    out = []
    for comparison, p in zip(results, adjusted):
        pair_ps = adjust([pair.p_value for pair in comparison.pairs], correction)
        pairs = [
            replace(pair, test=f"{pair.test}, {correction}", p_value=q)
            for pair, q in zip(comparison.pairs, pair_ps)
        ]
        out.append(
            replace(
                comparison,
                test=f"{comparison.test}, {correction}",
                p_value=p,
                pairs=pairs,
                winner=comparison.best if p < alpha else None,
            )
        )
    return out


def adjust(p_values: Sequence[float], correction: str) -> list[float]:
    """p-values corrected for their number: Bonferroni, or Holm's step-down (scipy has neither).

    Args:
        p_values: one per comparison.
        correction: ``none``, ``bonferroni`` or ``holm``.

    Example:
        >>> adjust([0.01, 0.04, 0.03], "holm")
        [0.03, 0.06, 0.06]
    """
    m = len(p_values)
    if correction == "none" or m == 0:
        return list(p_values)
    if correction == "bonferroni":
        return [min(p * m, 1.0) for p in p_values]
    if correction != "holm":
        raise StudyDataError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    order = sorted(range(m), key=p_values.__getitem__)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min((m - rank) * p_values[index], 1.0))
        adjusted[index] = round(running, 12)
    return adjusted


def correlations(
    rows: Sequence[Mapping[str, Any]], duration: str = "duration_s", prefix: str = "energy_"
) -> dict[str, float]:
    """Spearman's rho of each energy column (``energy_*``) with ``duration`` over all runs.

    An energy figure estimated from utilisation and time correlates with time
    by construction; :func:`format_table` says so when the runs' ``kind`` says
    ``estimated``.

    Args:
        rows: one mapping per run.
        duration: the duration column. Units: s.
        prefix: the energy columns' common prefix.
    """
    stats = require("scipy.stats", "study", purpose="Study statistics")
    if not rows or duration not in rows[0]:
        return {}
    out = {}
    for name in rows[0]:
        if not name.startswith(prefix):
            continue
        pairs = [
            (float(row[name]), float(row[duration])) for row in rows
            if str(row[name]).strip() and str(row[duration]).strip()
        ]  # fmt: skip
        if len(pairs) > 2 and len({p[0] for p in pairs}) > 1 and len({p[1] for p in pairs}) > 1:
            out[name] = float(stats.spearmanr(*zip(*pairs)).statistic)
    return out


def format_table(comparisons: Sequence[Comparison], rho: Mapping[str, float] | None = None,
                 estimated: bool = False) -> str:  # fmt: skip
    """The comparisons as text, one block per group and metric.

    Args:
        comparisons: what :func:`compare` returned.
        rho: energy-duration correlations to add (:func:`correlations`).
        estimated: the energy figures are estimates: add the note on correlation.
    """
    lines: list[str] = []
    for c in comparisons:
        where = ", ".join(f"{k}={v}" for k, v in c.by.items())
        better = "higher" if c.higher_is_better else "lower"
        lines.append(f"{c.metric}{f'  [{where}]' if where else ''}  ({better} is better)")
        for name, level in c.levels.items():
            mark = "  <- winner" if name == c.winner else ""
            lines.append(
                f"  {name:<20} n={level.n:<3} mean={level.mean:<12.6g} median={level.median:<12.6g}"
                f" std={level.std:<10.4g} {_times(c.ratio[name])}{mark}"
            )
        effect = ""
        if c.a12 is not None:
            effect = f", A12={c.a12:.3f} ({c.magnitude})"
        elif c.eta_squared is not None:
            effect = f", eta^2={c.eta_squared:.3f}"
        lines.append(f"  {c.test}: p={c.p_value:.4g}{effect}")
        if len(c.pairs) > 1:
            for pair in c.pairs:
                lines.append(
                    f"    {pair.first} vs {pair.second}: p={pair.p_value:.4g}, "
                    f"A12={pair.a12:.3f} ({pair.magnitude})"
                )
    if rho:
        lines.append("Spearman correlation of energy with duration:")
        for name, value in rho.items():
            lines.append(f"  {name}: rho={value:.3f}")
        if estimated:
            lines.append(
                "  note: these figures are estimates driven by time, so they correlate with "
                "duration by construction; the correlation confirms nothing"
            )
    return "\n".join(lines)


def _times(ratio: float | None) -> str:
    return "x-" if ratio is None else f"x{ratio:.3g}"


def non_dominated(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each ``(cost, loss)`` point, whether it is on the Pareto front: no other point is
    at least as low on both and lower on one (identical points are both on it). Lower is
    better on both: pass ``-accuracy`` as the loss.

    Args:
        points: ``(cost, loss)`` per candidate, e.g. ``(energy_j, -accuracy)``.

    Example:
        >>> non_dominated([(4.0, -0.90), (5.0, -0.965), (6.0, -0.95), (11.0, -0.97)])
        [True, True, False, True]
    """
    return [
        not any(c <= cost and q <= loss and (c, q) != (cost, loss) for c, q in points)
        for cost, loss in points
    ]
