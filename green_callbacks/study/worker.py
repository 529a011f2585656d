"""One run of a study, in its own process: ``python -m green_callbacks.study.worker REQ OUT``.

``REQ`` is a JSON file: the workload's ``entry``, its ``phase``, the
``treatment`` and ``args`` (keyword arguments), the ``meters`` and whether to
``profile``. A workload that takes ``measure`` is metered only inside
``with measure():``.
The worker imports the workload, meters its call with the package's tracker
and writes ``OUT`` (atomically) with the duration, the energy per domain and
its provenance, the workload's metrics and, when profiled, the functions that
took more than 1 % of the time. A workload that raises ends the process with
its traceback on stderr and exit code 1: the runner records the failure.
"""

from __future__ import annotations

import cProfile
import importlib
import inspect
import json
import math
import pstats
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from green_callbacks.core.atomic import write_json_atomic
from green_callbacks.core.records import WindowResult
from green_callbacks.core.tracker import EnergyTracker

PROFILE_SHARE = 0.01
"""Functions above this share of the run's time are kept from its profile."""


def resolve(entry: str) -> Callable[..., Any]:
    """The function ``module:function`` names.

    Args:
        entry: ``module:function``.
    """
    module, _, name = entry.partition(":")
    function = getattr(importlib.import_module(module), name, None)
    if not callable(function):
        raise SystemExit(f"green_callbacks study: {module!r} has no function {name!r}")
    return function  # type: ignore[no-any-return]


def metrics_of(result: Any) -> dict[str, float | None]:
    """The workload's return value as metrics: a number is ``quality``, a dict as given.

    A value that is not finite (a diverged loss's NaN) is kept as None: the
    record holds finite numbers or none, never NaN.

    Args:
        result: what the workload returned.

    Raises:
        SystemExit: a value that is not a number, named.
    """
    if result is None:
        return {}
    items = result.items() if isinstance(result, dict) else [("quality", result)]
    metrics: dict[str, float | None] = {}
    for name, value in items:
        if value is None:
            metrics[str(name)] = None
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SystemExit(
                f"green_callbacks study: the workload returned {name}={value!r}, not a number; "
                "return a number or a dict of numbers"
            ) from None
        metrics[str(name)] = number if math.isfinite(number) else None
    return metrics


def top_functions(profile: cProfile.Profile, share: float = PROFILE_SHARE) -> list[dict[str, Any]]:
    """The functions whose own and callees' time is above ``share`` of the total.

    Args:
        profile: a finished profile.
        share: the threshold, as a fraction of the run's time.
    """
    table = pstats.Stats(profile)
    total = max(table.total_tt, 1e-12)  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in table.stats.items():  # type: ignore[attr-defined]
        if cumulative / total >= share:
            rows.append({"function": f"{name} ({Path(filename).name}:{line})", "calls": calls,
                         "own_s": own, "cumulative_s": cumulative})  # fmt: skip
    return sorted(rows, key=lambda row: -row["cumulative_s"])


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Meter one call of the workload; the result the runner records.

    Args:
        request: ``entry``, ``phase``, ``treatment``, ``meters``, ``profile``.
    """
    function = resolve(request["entry"])
    profile = cProfile.Profile() if request.get("profile") else None
    tracker = EnergyTracker(request.get("meters") or "auto").start()
    measured: list[WindowResult] = []

    @contextmanager
    def measure() -> Iterator[None]:
        """Meter only what runs inside (the workload's own choice of what counts)."""
        window = tracker.open("phase", "measured")
        if profile is not None:
            profile.enable()
        try:
            yield
        finally:
            if profile is not None:
                profile.disable()
            measured.append(tracker.close(window))

    keywords = {**request.get("args", {}), **request["treatment"]}
    if "measure" in inspect.signature(function).parameters:
        keywords["measure"] = measure
    try:
        if "measure" in keywords:
            returned = function(phase=request["phase"], **keywords)
        else:
            with measure():
                returned = function(phase=request["phase"], **keywords)
    finally:
        tracker.stop()
    if len(measured) != 1:
        raise SystemExit(
            f"green_callbacks study: {request['entry']} called measure() {len(measured)} "
            "times; call it once, around the work to meter"
        )
    totals = measured[0]
    metrics = metrics_of(returned)
    not_finite = [f"metric {name} was not a finite number: recorded as none"
                  for name, value in metrics.items() if value is None]  # fmt: skip
    return {
        "duration_s": totals.duration_s,
        "energy_j": totals.energy_j,
        "domains": totals.energy_by_domain,
        "kind": totals.kind,
        "sources": [d.label() for d in totals.layout.domains],
        "notes": [*totals.notes, *not_finite],
        "metrics": metrics,
        "profile": top_functions(profile) if profile is not None else [],
    }


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    write_json_atomic(Path(argv[1]), run(request))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
