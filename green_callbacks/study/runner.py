"""Run a study: every planned run in a fresh process, metered, recorded once, resumable.

``green-callbacks study run STUDY.toml --out DIR`` writes into ``DIR``:

- ``runs.jsonl``: the run ledger (:mod:`green_callbacks.core.ledger`): a
  header naming the study's definition (the study as read, the workloads'
  code, the interpreter, the machine, the package's version), then one record
  per finished run (measured or failed), appended and flushed to disk before
  the next run starts. A study killed at any moment and started again with the
  same command skips the runs already there and runs the rest: no run is lost
  or repeated. A changed study, workload or machine is refused with the
  difference named (``--force-new`` measures into ``DIR-v2``); a second
  runner on the same folder is refused with the first one's PID.
- ``runs.csv``: the same, flattened to one row per run (``energy_<domain>_j``,
  ``duration_s``, the workload's metrics...), rewritten atomically after each
  run, ready for ``green-callbacks study stats``. A workload metric named like
  one of the runner's own columns is written as ``metric.<name>``.
- ``machine.json``: the machine and software.
- ``plan.json``: the run order and the seed, so the order is reproducible;
  ``study.json``: the study as it was read.

Each run's worker is a process group of its own: a timeout, or the runner
being stopped, ends the worker and every process it started, and the
worker's output goes to files, so nothing a workload left behind can hold
the runner or overlap the next run.

Before each run the runner waits the cooldown and measures the idle power
during it (``idle_w``, recorded next to the run). Nothing is subtracted from
``energy_j``; ``runs.csv`` also has ``energy_above_idle_j`` (``energy_j -
idle_w x duration_s``) for comparing on the work alone.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from green_callbacks.core.atomic import atomic_write, write_json_atomic
from green_callbacks.core.ledger import LEDGER, Ledger
from green_callbacks.core.machine import machine
from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.study.definition import PlannedRun, Study, plan

RUNS = LEDGER
TABLE = "runs.csv"
MACHINE = "machine.json"
PLAN = "plan.json"
STUDY = "study.json"
STDERR_TAIL = 2000
"""Characters of a failed run's stderr kept in the record."""
OWN_COLUMNS = ("index", "block", "workload", "phase", "repetition", "warmup", "status",
               "exit_code", "duration_s", "energy_j", "idle_w", "energy_above_idle_j",
               "kind")  # fmt: skip
"""runs.csv's columns that the runner writes itself (a metric never overwrites one)."""
METRIC_PREFIX = "metric."


def table(records: Sequence[dict[str, Any]], factors: Sequence[str]) -> str:
    """The records as CSV text: one row per run, one column per figure.

    Args:
        records: the runs' records.
        factors: the factor names (columns after the run's identity).
    """
    rows = []
    for record in records:
        row = {
            "index": record["index"], "block": record["block"], "workload": record["workload"],
            "phase": record["phase"], **record["treatment"], "repetition": record["repetition"],
            "warmup": int(record["warmup"]), "status": record["status"],
            "exit_code": record.get("exit_code", ""), "duration_s": record.get("duration_s", ""),
            "energy_j": record.get("energy_j", ""),
        }  # fmt: skip
        for domain, joules in record.get("domains", {}).items():
            row[f"energy_{domain.replace(':', '')}_j"] = joules
        idle_w = record.get("idle_w")
        row["idle_w"] = "" if idle_w is None else idle_w
        if idle_w is not None and record.get("status") == "ok":  # what the machine drew anyway
            row["energy_above_idle_j"] = record["energy_j"] - idle_w * record["duration_s"]
        row["kind"] = record.get("kind", "")
        for name, value in record.get("metrics", {}).items():
            own = name in row or name in OWN_COLUMNS or name.startswith("energy_")
            row[f"{METRIC_PREFIX}{name}" if own else name] = value
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def cool_down(study: Study, sleep: Callable[[float], None] = time.sleep) -> float | None:
    """Wait the study's cooldown; the idle power measured during it (None without a pause). W.

    With ``stable_within_pct`` it measures one-second windows until two in a
    row differ by less than that percentage, or the cap is reached.

    Args:
        study: the study (its cooldown and meters).
        sleep: how to wait (tests pass a fake).
    """
    cooldown = study.cooldown
    if cooldown.seconds <= 0:
        return None
    with EnergyTracker(study.meters, sample_interval_s=None) as tracker:
        if cooldown.stable_within_pct is None:
            window = tracker.open("phase", "idle")
            sleep(cooldown.seconds)
            return tracker.close(window).avg_power_w
        waited, previous, power = 0.0, None, 0.0
        while waited < cooldown.seconds:
            window = tracker.open("phase", "idle")
            sleep(min(1.0, cooldown.seconds - waited))
            result = tracker.close(window)
            waited += result.duration_s or 1.0
            power = result.avg_power_w
            if previous and abs(power - previous) / previous * 100 < cooldown.stable_within_pct:
                break
            previous = power
        return power


def definition_of(study: Study, python: str) -> dict[str, Any]:
    """What shapes every figure of a study: its ledger's definition.

    The study as read (not where its file is), each workload's code, the
    interpreter the runs start in and the machine.

    Args:
        study: the parsed study.
        python: the interpreter the runs start in.
    """
    settings = asdict(study)
    settings.pop("source")
    code = {w.entry: _code_fingerprint(w.entry) for w in study.workloads}
    return {"study": settings, "workload_code": code, "python": python, "machine": machine()}


def _code_fingerprint(entry: str) -> str | None:
    """A hash of the file holding a workload's module (None: not found as a file)."""
    try:
        spec = importlib.util.find_spec(entry.partition(":")[0])
        origin = spec.origin if spec is not None else None
        return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:20] if origin else None
    except (ImportError, ValueError, OSError):
        return None


def run_key(planned: PlannedRun) -> dict[str, Any]:
    """What tells a planned run from the study's others: its place and its cell."""
    return {"index": planned.index, "workload": planned.workload, "phase": planned.phase,
            "treatment": planned.treatment, "repetition": planned.repetition,
            "warmup": planned.warmup}  # fmt: skip


def run_study(
    study: Study,
    out: Path,
    *,
    progress: TextIO = sys.stderr,
    python: str = sys.executable,
    force_new: bool = False,
) -> tuple[Path, list[dict[str, Any]]]:
    """Run every planned run not yet recorded in ``out``; returns the folder and all records.

    Args:
        study: the parsed study.
        out: the folder for its records (created; an earlier run of the same study resumes).
        progress: where one line per run goes (runs done, left, time left).
        python: the interpreter the runs start in.
        force_new: measure into a new version of ``out`` (``out-v2``...) if it holds a ledger.

    Raises:
        LedgerLockedError: another runner is writing ``out``.
        LedgerMismatchError: ``out`` holds runs of another definition.
    """
    runs = plan(study)
    with Ledger.open(out, "study", definition_of(study, python), force_new=force_new) as ledger:
        out = ledger.folder
        for note in ledger.notes:
            print(f"note: {note}", file=progress)
        write_json_atomic(out / PLAN, {"seed": study.seed, "order": study.order,
                                        "runs": [asdict(r) for r in runs]})  # fmt: skip
        write_json_atomic(out / STUDY, asdict(study))
        write_json_atomic(out / MACHINE, ledger.definition["machine"])
        found = {r.index: ledger.get(run_key(r)) for r in runs}
        done = {index: record for index, record in found.items() if record is not None}
        todo = [r for r in runs if r.index not in done]
        if done:
            print(f"resuming: {len(done)} of {len(runs)} runs already recorded", file=progress)
        started = time.monotonic()
        for count, planned in enumerate(todo, start=1):
            idle_w = cool_down(study)
            record = _run_one(study, planned, python)
            record["idle_w"] = idle_w
            done[planned.index] = ledger.append(run_key(planned), record)
            _write_table(out, study, done)
            elapsed = time.monotonic() - started
            _report(progress, planned, record, len(done), len(runs),
                    (len(todo) - count) * elapsed / count)  # fmt: skip
        _write_table(out, study, done)
    return out, [done[i] for i in sorted(done)]


def _report(
    progress: TextIO, planned: PlannedRun, record: dict[str, Any], done: int, total: int,
    left_s: float,
) -> None:  # fmt: skip
    ok = record["status"] == "ok"
    figure = (f"{record['energy_j']:.4g} J, {record['duration_s']:.3g} s" if ok
              else f"FAILED: {_last_line(record['error'])}")  # fmt: skip
    levels = " ".join(f"{k}={v}" for k, v in planned.treatment.items())
    print(
        f"[{done}/{total}] {planned.workload} {planned.phase} {levels}"
        f"{' (warm-up)' if planned.warmup else ''}: {figure}; about {left_s:.0f} s left",
        file=progress, flush=True,
    )  # fmt: skip


def _last_line(text: str) -> str:
    """The last non-empty line of a traceback: the error itself."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else "no message"


def _write_table(out: Path, study: Study, done: dict[int, dict[str, Any]]) -> None:
    text = table([done[i] for i in sorted(done)], list(study.factors))
    atomic_write(out / TABLE, lambda part: part.write_text(text, encoding="utf-8"))


def _run_one(study: Study, planned: PlannedRun, python: str) -> dict[str, Any]:
    record: dict[str, Any] = asdict(planned)
    request = {"entry": planned.entry, "phase": planned.phase, "treatment": planned.treatment,
               "args": planned.args, "meters": study.meters, "profile": study.profile}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="green-callbacks-run-") as folder:
        request_path, result_path = Path(folder) / "request.json", Path(folder) / "result.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        command = [python, "-m", "green_callbacks.study.worker", str(request_path),
                   str(result_path)]  # fmt: skip
        exit_code, stderr = run_group(command, Path(folder) / "stderr.txt", study.timeout_s)
        if exit_code is None:
            return {**record, "status": "failed", "exit_code": None,
                    "error": f"timed out after {study.timeout_s:g} s; {stderr}"}  # fmt: skip
        if exit_code != 0 or not result_path.exists():
            return {**record, "status": "failed", "exit_code": exit_code, "error": stderr}
        result = json.loads(result_path.read_text(encoding="utf-8"))
    return {**record, "status": "ok", "exit_code": 0, **result}


def run_group(command: list[str], stderr_path: Path, timeout_s: float) -> tuple[int | None, str]:
    """Run ``command`` as a process group of its own; its exit code (None: timed out) and stderr.

    Its output goes to a file, not a pipe, so a process it left behind cannot
    hold the caller; when it ends, times out, or the caller is interrupted,
    every process still in its group is killed.

    Args:
        command: the worker's command line.
        stderr_path: where its stderr is written (the last characters are returned).
        timeout_s: the longest it may run. Units: s.
    """
    with open(stderr_path, "w+b") as stderr:
        worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=stderr, start_new_session=True)  # fmt: skip
        try:
            exit_code: int | None = worker.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            exit_code = None
        finally:
            _kill_group(worker)
        stderr.seek(max(stderr.seek(0, os.SEEK_END) - STDERR_TAIL, 0))
        return exit_code, stderr.read().decode(errors="replace")


def _kill_group(worker: subprocess.Popen[bytes]) -> None:
    """End the worker and everything it started (the group is the worker's PID)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
