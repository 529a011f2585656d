"""The study harness's own cost per run: a fresh process, imports, metering, the record.

The same workload (``spin`` at a small size) is timed three ways, interleaved:
called in this process; run by the worker in a fresh process without the
runner; and run through ``run_study`` (process, metering, records). The
differences are what the harness adds to every run, so users know what part
of a short run is the harness and how long a run must be for it not to matter.

    .venv/bin/python benchmarks/bench_study.py [--quick] [--json]
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import arguments, emit, median

from green_callbacks.study import runner
from green_callbacks.study.definition import parse
from green_callbacks.study.workloads import spin

SIZE = 2000
ENTRY = "green_callbacks.study.workloads:spin"


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    rounds = 3 if args.quick else 10
    folder = Path(tempfile.mkdtemp(prefix="gc-bench-study-"))
    request = folder / "request.json"
    request.write_text(json.dumps({"entry": ENTRY,
                                   "phase": "train", "treatment": {"size": SIZE},
                                   "meters": ["estimate"]}))  # fmt: skip
    times: dict[str, list[float]] = {"in process": [], "worker process": [], "runner": []}
    for round_ in range(rounds):
        started = time.perf_counter()
        spin("train", size=SIZE)
        times["in process"].append(time.perf_counter() - started)

        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "green_callbacks.study.worker", str(request),
                        str(folder / f"result{round_}.json")], check=True)  # fmt: skip
        times["worker process"].append(time.perf_counter() - started)

        study = parse({"factors": {"size": [SIZE, SIZE + 1]},
                       "workloads": [{"name": "spin", "entry": ENTRY}],
                       "study": {"repetitions": 1, "phases": ["train"], "meters": ["estimate"]}},
                      "bench")  # fmt: skip
        started = time.perf_counter()
        runner.run_study(study, folder / f"out{round_}", progress=io.StringIO())
        times["runner"].append((time.perf_counter() - started) / 2)  # two runs per study
    base = median(times["in process"])
    result = {name: {"median_s": median(values), "added_s": median(values) - base}
              for name, values in times.items()}  # fmt: skip
    table = [f"{'way':<16}{'median s':>12}{'added s':>12}"]
    table += [
        f"{name:<16}{r['median_s']:>12.3f}{r['added_s']:>12.3f}" for name, r in result.items()
    ]
    table.append(f"({rounds} rounds, interleaved; a run should last well over "
                 f"{result['runner']['added_s']:.1f} s for the harness not to matter)")  # fmt: skip
    emit(result, table, args.json)


if __name__ == "__main__":
    main()
