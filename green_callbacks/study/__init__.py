"""Energy studies: compare frameworks, backends and settings with the rigour of a published study.

Framework-free: it runs workloads in subprocesses and analyses numbers. The
statistics (:mod:`green_callbacks.study.stats`) need the ``study`` extra
(scipy); ``green-callbacks study stats RUNS.csv --factor COL`` runs them from
the command line (docs/studies.md).
"""

from __future__ import annotations

from green_callbacks.study.stats import (
    THRESHOLDS,
    Comparison,
    LevelStats,
    PairTest,
    StudyDataError,
    a12,
    adjust,
    compare,
    correlations,
    magnitude,
    measured,
    non_dominated,
    read_runs,
)

__all__ = [
    "THRESHOLDS", "Comparison", "LevelStats", "PairTest", "StudyDataError", "a12", "adjust",
    "compare", "correlations", "magnitude", "measured", "non_dominated", "read_runs",
]  # fmt: skip
