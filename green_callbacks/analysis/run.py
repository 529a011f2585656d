"""A run read back from what the package and the loggers wrote, in one shape.

:func:`read_run` takes a path and finds what it holds: a run folder (an
``EnergyCallback(run_dir=...)`` output, ``run_dir/version_N``; ``run_dir`` itself
reads the newest version, as a folder of Lightning's ``version_N`` logs does), an
energy summary JSON, a window trace
(JSONL), a Lightning or Keras ``CSVLogger`` file, or a Hugging Face
``trainer_state.json``; a folder is searched for all of them. Each becomes part
of one :class:`RunRecord`: totals and provenance from the summary, windows from
the trace, one row of metrics per epoch from the logs. What the sources lack
is listed in ``missing``; a truncated or unreadable file is a note, never a guess.

Example, a Keras ``CSVLogger`` file:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "log.csv").write_text(
    ...     "epoch,val_acc,energy/train_epoch_j\\n0,0.5,100\\n1,0.7,110\\n")
    >>> run = read_run(folder / "log.csv")
    >>> [row["val_acc"] for row in run.epochs], run.formats
    ([0.5, 0.7], ['csv-log'])
    >>> run.missing[0]
    'no energy summary: totals from the logged figures, provenance unknown'
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from green_callbacks.core.run_folder import versions
from green_callbacks.core.session import job_totals
from green_callbacks.errors import ConfigError

SUMMARY_NAMES = ("summary.json", "energy_summary.json")
TRACE_NAMES = ("trace.jsonl",)
HISTORY_NAMES = ("history.jsonl", "history.csv", "metrics.csv")
FACTS = "facts.json"
TFEVENTS = "events.out.tfevents.*"
QUALITY_KEYS = ("val_acc", "val_accuracy", "eval_accuracy", "accuracy", "acc", "val_f1",
                "eval_f1", "f1")  # fmt: skip
"""Metrics that measure quality (higher is better), in the order they are looked for."""


class RunReadError(ConfigError):
    """A path that holds nothing a run can be read from; the message lists what was looked for."""


@dataclass
class RunRecord:
    """Everything recorded about one run, whatever wrote it.

    Attributes:
        source: the path read.
        formats: what was found (``summary``, ``trace``, ``history``, ``csv-log``,
            ``hf-state``, ``facts``).
        total_j: the run's energy, or None. Units: J.
        duration_s: the run's duration, or None. Units: s.
        energy_kind: ``measured``, ``estimated``, ``replayed`` or ``mixed``, or None.
        energy_source: the sources, as ``domain=label`` pairs, or None.
        by_domain: energy per domain. Units: J.
        epochs: one mapping per epoch: ``epoch`` and every metric logged for it.
        windows: the trace's windows (``level``, ``name``, ``start_s``, ``duration_s``,
            ``energy_j``).
        facts: other recorded figures: ``params``, ``dtypes``, ``loaded_weights``,
            ``checkpoints`` (a list of saves), ``oom_events``, ``inference_j_per_sample``...
        notes: the summary's notes (a dropped sensor, an interrupted run) and the
            reader's (which of several runs was read, a file skipped).
        missing: what the sources lack, in words.
    """

    source: str
    formats: list[str] = field(default_factory=list)
    total_j: float | None = None
    duration_s: float | None = None
    energy_kind: str | None = None
    energy_source: str | None = None
    by_domain: dict[str, float] = field(default_factory=dict)
    epochs: list[dict[str, float]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def series(self, key: str) -> list[tuple[int, float]]:
        """(epoch, value) for every epoch that logged ``key``.

        Args:
            key: a metric name (``val_acc``, ``energy/train_epoch_j``...).
        """
        return [(int(row["epoch"]), row[key]) for row in self.epochs if key in row]

    @property
    def quality_key(self) -> str | None:
        """The first quality metric the epochs logged (:data:`QUALITY_KEYS`), or None."""
        logged = {key for row in self.epochs for key in row}
        return next((key for key in QUALITY_KEYS if key in logged), None)

    def epoch_energy(self) -> list[tuple[int, float]]:
        """(epoch, training + validation energy) for every epoch that logged it. Units: J."""
        found = []
        for row in self.epochs:
            parts = [row[k] for k in ("energy/train_epoch_j", "energy/val_epoch_j") if k in row]
            if parts:
                found.append((int(row["epoch"]), sum(parts)))
        return found


def read_run(path: str | Path) -> RunRecord:
    """Read a run from ``path``: a file in one of the formats, or a folder holding them.

    Args:
        path: a run folder, a summary JSON, a trace JSONL, a CSV log or a
            ``trainer_state.json``.

    Raises:
        RunReadError: the path does not exist or holds none of the formats.
    """
    if str(path).startswith("mlflow:"):
        from green_callbacks.analysis.loggers import read_mlflow

        run = read_mlflow(str(path))
        _fill_missing(run)
        return run
    where = Path(path)
    if where.match(TFEVENTS):
        where = where.parent
    if not where.exists():
        raise RunReadError(
            f"{where} does not exist; give a run folder, a summary, a trace or a log"
        )
    chosen = None
    if where.is_dir() and not _candidates(where) and not any(where.glob(TFEVENTS)):
        found = versions(where)
        if found:  # a run_dir of several runs: the newest
            chosen = (
                f"read {found[-1][1]}, the newest of {len(found)} runs in {where} "
                "(give a version folder to read another)"
            )
            where = found[-1][1]
    run = RunRecord(str(where))
    if chosen is not None:
        run.notes.append(chosen)
    files = [where] if where.is_file() else _candidates(where)
    for file in files:
        _read_file(file, run)
    if where.is_dir():
        from green_callbacks.analysis.loggers import read_tensorboard

        read_tensorboard(where, run)
    _read_hparams(where if where.is_dir() else where.parent, run)
    if not run.formats:
        raise RunReadError(
            f"{where} holds no run this package can read: looked for an energy summary "
            f"({', '.join(SUMMARY_NAMES)}), a trace ({', '.join(TRACE_NAMES)}), a CSV log "
            f"({', '.join(HISTORY_NAMES)}, or any CSV with an epoch column), a Hugging Face "
            "trainer_state.json and TensorBoard event files; an MLflow run is "
            "mlflow:RUN_ID@TRACKING_URI"
        )
    _fill_missing(run)
    return run


def _candidates(folder: Path) -> list[Path]:
    names = [*SUMMARY_NAMES, *TRACE_NAMES, *HISTORY_NAMES, "trainer_state.json", FACTS]
    found = [folder / name for name in names if (folder / name).is_file()]
    if not any(f.name in HISTORY_NAMES or f.name == "trainer_state.json" for f in found):
        newest = sorted(folder.glob("checkpoint-*/trainer_state.json"), key=_step)  # HF output_dir
        found += newest[-1:]
    return found


def _step(path: Path) -> int:
    try:
        return int(path.parent.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _read_file(file: Path, run: RunRecord) -> None:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        run.notes.append(f"{file} could not be read ({err})")
        return
    if file.name.startswith("history") and file.suffix == ".jsonl":
        _read_history(text, file, run)
    elif file.suffix == ".jsonl":
        _read_trace(text, file, run)
    elif file.suffix == ".csv":
        _read_csv(text, file, run)
    elif file.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            run.notes.append(f"{file} is not complete JSON ({err}); skipped")
            return
        if isinstance(data, dict) and "log_history" in data:
            _read_hf_state(data, run)
        elif isinstance(data, dict) and "totals" in data:
            _read_summary(data, run)
        elif file.name == FACTS and isinstance(data, dict):
            run.facts.update(data)
            run.formats.append("facts")
        else:
            run.notes.append(f"{file} is JSON of no known kind (no 'totals', no 'log_history')")


def _read_summary(data: Mapping[str, Any], run: RunRecord) -> None:
    totals = job_totals(data)
    if totals.get("processes"):
        run.notes.append(
            f"a job of {totals['processes']} processes: the total is the job's; the energy by "
            "domain and the sources are rank 0's share"
        )
    if not isinstance(totals, Mapping) or "energy_j" not in totals:
        run.notes.append("the summary has no totals (a run that never started, or an old format)")
    else:
        run.total_j = _number(totals.get("energy_j"))
        run.duration_s = _number(totals.get("duration_s"))
        run.energy_kind = totals.get("kind")
        run.by_domain = {k: float(v) for k, v in (totals.get("domains") or {}).items()}
        sources = totals.get("sources") or []
        run.energy_source = (
            ", ".join(
                f"{s.get('domain')}={s.get('kind')} ({s.get('source')} {s.get('method')})"
                for s in sources
                if isinstance(s, Mapping)
            )
            or None
        )
    run.notes += [str(n) for n in data.get("notes") or []]
    run.facts.update(data.get("facts") or {})
    run.formats.append("summary")


def _read_trace(text: str, file: Path, run: RunRecord) -> None:
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            where = "last line" if number == len(lines) else f"line {number}"
            run.notes.append(
                f"{file}: {where} is cut short or not JSON; the windows before it kept"
            )
            continue
        if isinstance(row, dict) and {"level", "energy_j", "duration_s"} <= set(row):
            run.windows.append(row)
    run.formats.append("trace")


def _read_history(text: str, file: Path, run: RunRecord) -> None:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            run.notes.append(f"{file}: line {number} is cut short or not JSON; skipped")
    merge_epochs(run, _by_epoch(entries, int))
    run.formats.append("history")


def _read_csv(text: str, file: Path, run: RunRecord) -> None:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or "epoch" not in rows[0]:
        run.notes.append(f"{file} has no epoch column; not a training log")
        return
    merge_epochs(run, _by_epoch(rows, int))  # Lightning writes several rows per epoch
    run.formats.append("csv-log")


def _read_hf_state(data: Mapping[str, Any], run: RunRecord) -> None:
    # HF's epoch 1.0 ends the first epoch; 0.5 is half-way through it
    merge_epochs(
        run, _by_epoch(data.get("log_history") or [], lambda e: max(math.ceil(e - 1e-6) - 1, 0))
    )
    run.formats.append("hf-state")


def _by_epoch(entries: Iterable[Any], index: Callable[[float], int]) -> list[dict[str, float]]:
    """Logged entries as one row per epoch: the last number of each key in an epoch wins.

    Args:
        entries: mappings with an ``epoch`` (others are skipped).
        index: the epoch's index from the logged ``epoch`` value.
    """
    found: dict[int, dict[str, float]] = {}
    for entry in entries:
        epoch = _number(entry.get("epoch")) if isinstance(entry, Mapping) else None
        if epoch is None:
            continue
        merged = found.setdefault(index(epoch), {"epoch": index(epoch)})
        for key, value in entry.items():
            number = _number(value)
            if key not in ("epoch", "step") and number is not None:
                merged[key] = number
    return list(found.values())


def merge_epochs(run: RunRecord, rows: Iterable[dict[str, float]]) -> None:
    """Add per-epoch rows to ``run``, joining rows of the same epoch.

    Args:
        run: the record.
        rows: one mapping per epoch, with ``epoch``.
    """
    existing = {int(row["epoch"]): row for row in run.epochs}
    for row in rows:
        existing.setdefault(int(row["epoch"]), {"epoch": row["epoch"]}).update(row)
    run.epochs = [existing[k] for k in sorted(existing)]


def _read_hparams(folder: Path, run: RunRecord) -> None:
    """The provenance Lightning's loggers keep in ``hparams.yaml`` (flat ``key: value`` lines)."""
    path = folder / "hparams.yaml"
    if run.energy_kind is not None or not path.is_file():
        return
    pairs = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("energy_source/"):
            pairs[key] = value.strip().strip("'\"")
    run.energy_kind = pairs.pop("energy_source/kind", None)
    labels = [f"{k.removeprefix('energy_source/')}={v}" for k, v in sorted(pairs.items())]
    run.energy_source = run.energy_source or ", ".join(labels) or None


def _fill_missing(run: RunRecord) -> None:
    if "summary" not in run.formats:
        provenance = "provenance from the logger" if run.energy_kind else "provenance unknown"
        run.missing.append(f"no energy summary: totals from the logged figures, {provenance}")
        logged = [v for _, v in run.series("energy/total_j")]
        totals = run.epoch_energy()
        if logged and run.total_j is None:
            run.total_j = logged[-1]
        elif totals and run.total_j is None:
            run.total_j = sum(j for _, j in totals)
            run.missing.append("total energy summed from the logged epochs (no energy/total_j)")
    if not run.epochs:
        run.missing.append("no per-epoch history: no log with an epoch column was found")
    elif run.quality_key is None:
        run.missing.append(f"no quality metric logged (looked for {', '.join(QUALITY_KEYS)})")
    if not run.windows:
        run.missing.append("no window trace: power over time unknown")


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
