"""Run a study: every planned run in a fresh process, metered, recorded once, resumable.

``green-callbacks study run STUDY.toml --out DIR`` writes into ``DIR``:

- ``runs.jsonl``: one JSON object per finished run (measured or failed),
  appended and flushed to disk before the next run starts. A study killed at
  any moment and started again with the same command skips the runs already
  there and runs the rest: no run is lost or repeated.
- ``runs.csv``: the same, flattened to one row per run (``energy_<domain>_j``,
  ``duration_s``, the workload's metrics...), rewritten atomically after each
  run, ready for ``green-callbacks study stats``.
- ``machine.json``: the machine and software, recorded once.
- ``plan.json``: the run order and the seed, so the order is reproducible;
  ``study.json``: the study as it was read.

Before each run the runner waits the cooldown and measures the idle power
during it (``idle_w``, recorded next to the run). Nothing is subtracted from
``energy_j``; ``runs.csv`` also has ``energy_above_idle_j`` (``energy_j -
idle_w x duration_s``) for comparing on the work alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from green_callbacks.core.atomic import atomic_write, write_json_atomic
from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.study.definition import PlannedRun, Study, plan

RUNS = "runs.jsonl"
TABLE = "runs.csv"
MACHINE = "machine.json"
PLAN = "plan.json"
STUDY = "study.json"
STDERR_TAIL = 2000
"""Characters of a failed run's stderr kept in the record."""
PACKAGES = ("torch", "lightning", "keras", "tensorflow", "transformers", "jax", "numpy")


def finished(out: Path) -> dict[int, dict[str, Any]]:
    """The runs already recorded in ``out``, by their index in the plan.

    A last line cut short by a crash mid-write is ignored (that run is run again).

    Args:
        out: the study's folder.
    """
    path = out / RUNS
    if not path.exists():
        return {}
    done = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[int(record["index"])] = record
    return done


def append_record(out: Path, record: dict[str, Any]) -> None:
    """Append one run's record and flush it to disk before anything else happens.

    Args:
        out: the study's folder.
        record: the run's record (one JSON line).
    """
    line = json.dumps(record, allow_nan=False) + "\n"
    path = out / RUNS
    with open(path, "a", encoding="utf-8") as handle:
        if handle.tell() and not path.read_bytes().endswith(b"\n"):
            handle.write("\n")  # after a torn last line, start a fresh one
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


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
        row.update(record.get("metrics", {}))
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def machine() -> dict[str, Any]:
    """The machine and software the study ran on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "packages": {},
    }
    try:
        import psutil

        info["memory_bytes"] = psutil.virtual_memory().total
    except ImportError:  # pragma: no cover - psutil is a core dependency
        pass
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor.exists():
        info["cpu_governor"] = governor.read_text().strip()
    for name in ("green-callbacks", *PACKAGES):
        try:
            info["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    info["gpus"] = _gpus()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpus() -> list[str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            return [str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                    for i in range(count)]  # fmt: skip
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: no GPU to record
        return []


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


def run_study(
    study: Study, out: Path, *, progress: TextIO = sys.stderr, python: str = sys.executable
) -> list[dict[str, Any]]:
    """Run every planned run not yet recorded in ``out``; returns all records.

    Args:
        study: the parsed study.
        out: the folder for its records (created; an earlier run of the same study resumes).
        progress: where one line per run goes (runs done, left, time left).
        python: the interpreter the runs start in.
    """
    out.mkdir(parents=True, exist_ok=True)
    runs = plan(study)
    write_json_atomic(out / PLAN, {"seed": study.seed, "order": study.order,
                                    "runs": [asdict(r) for r in runs]})  # fmt: skip
    write_json_atomic(out / STUDY, asdict(study))
    if not (out / MACHINE).exists():
        write_json_atomic(out / MACHINE, machine())
    done = finished(out)
    todo = [r for r in runs if r.index not in done]
    if done:
        print(f"resuming: {len(done)} of {len(runs)} runs already recorded", file=progress)
    started = time.monotonic()
    for count, planned in enumerate(todo, start=1):
        idle_w = cool_down(study)
        record = _run_one(study, planned, python)
        record["idle_w"] = idle_w
        append_record(out, record)
        done[planned.index] = record
        _write_table(out, study, done)
        elapsed = time.monotonic() - started
        left = (len(todo) - count) * elapsed / count
        ok = record["status"] == "ok"
        figure = (f"{record['energy_j']:.4g} J, {record['duration_s']:.3g} s" if ok
                  else f"FAILED: {_last_line(record['error'])}")  # fmt: skip
        levels = " ".join(f"{k}={v}" for k, v in planned.treatment.items())
        print(
            f"[{len(done)}/{len(runs)}] {planned.workload} {planned.phase} {levels}"
            f"{' (warm-up)' if planned.warmup else ''}: {figure}; about {left:.0f} s left",
            file=progress, flush=True,
        )  # fmt: skip
    _write_table(out, study, done)
    return [done[i] for i in sorted(done)]


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
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=study.timeout_s)  # fmt: skip
        except subprocess.TimeoutExpired as err:
            tail = (err.stderr or b"")[-STDERR_TAIL:]
            text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            return {**record, "status": "failed", "exit_code": None,
                    "error": f"timed out after {study.timeout_s:g} s; {text}"}  # fmt: skip
        if done.returncode != 0 or not result_path.exists():
            return {**record, "status": "failed", "exit_code": done.returncode,
                    "error": done.stderr[-STDERR_TAIL:]}  # fmt: skip
        result = json.loads(result_path.read_text(encoding="utf-8"))
    return {**record, "status": "ok", "exit_code": 0, **result}
