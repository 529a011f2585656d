"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from green_callbacks.errors import EnergySourceWarning
from green_callbacks.meters import Meter, ReplayMeter
from green_callbacks.testing import FakePowercapTree

warnings.simplefilter("ignore", EnergySourceWarning)  # benchmarks know they run on estimates


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="short run (CI smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args()


def sources() -> dict[str, Callable[[], list[Any]]]:
    """Meter factories for each source this machine can run, fresh per call."""
    folder = Path(tempfile.mkdtemp(prefix="gc-bench-powercap-"))
    tree = FakePowercapTree(folder)
    tree.add_zone("intel-rapl:0", "package-0")
    tree.add_zone("intel-rapl:0:0", "core")
    tree.add_zone("intel-rapl:0:1", "dram")

    def replay() -> list[Meter]:
        return [ReplayMeter.from_power([0.0, 3600.0], [150.0, 150.0])]

    return {
        "estimate": lambda: ["estimate"],
        "replay": replay,
        "rapl (fake powercap tree on disk)": lambda: [f"rapl:{tree.root}"],
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(result: dict[str, Any], table: list[str], as_json: bool) -> None:
    print(json.dumps(result, indent=2) if as_json else "\n".join(table))
