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

Reading is total: JSON or CSV of the wrong shape (a field of the wrong type, a
negative or non-finite energy, nesting deeper than Python parses) becomes a
note naming the file and the field, never a traceback. Memory is bounded: logs
are read line by line, a log of more than :data:`MAX_EPOCH_ROWS` epochs is read
as groups of consecutive epochs (``epoch_stride``: energy summed over the group,
every other metric the group's last value, and a note saying so), and a trace
of more than :data:`MAX_WINDOWS` step windows keeps neighbouring steps merged.

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
import math
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from green_callbacks.core.readback import finite, parse_json
from green_callbacks.core.run_folder import versions
from green_callbacks.core.session import job_totals
from green_callbacks.errors import ConfigError

SUMMARY_NAMES = ("summary.json", "energy_summary.json")
TRACE_NAMES = ("trace.jsonl",)
HISTORY_NAMES = ("history.jsonl", "history.csv", "metrics.csv")
FACTS = "facts.json"
TFEVENTS = "events.out.tfevents.*"
MAX_EPOCH_ROWS = 50_000
"""Epoch rows a record keeps; a longer log is read as groups of 2, 4, 8... epochs."""
MAX_WINDOWS = 50_000
"""Step windows a record keeps from a trace; beyond, neighbouring steps are merged."""
SUMMED_SUFFIXES = ("_epoch_j", "_held_j")
"""Per-epoch energies: a group of epochs has their sum (any other metric: its last value)."""
NON_NEGATIVE_PREFIXES = ("energy/", "power/", "carbon/", "time/", "memory/")
"""Figures that cannot be negative: a negative one is left out with a note."""
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
            reader's (which of several runs was read, a file or field skipped).
        missing: what the sources lack, in words.
        epoch_stride: how many consecutive epochs each row of ``epochs`` holds
            (1 unless the log had more than :data:`MAX_EPOCH_ROWS`); a row's
            ``epoch`` is the group's last.
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
    epoch_stride: int = 1

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


def read_run(path: str | Path, *more: str | Path) -> RunRecord:
    """Read a run from ``path``: a file in one of the formats, or a folder holding them.

    A folder is searched :data:`SEARCH_DEPTH` deep for what one run wrote (the
    summary, the loggers' own folders, the run folder), all joined into one run.

    Args:
        path: a run folder or an output folder, a summary JSON, a trace JSONL, a CSV
            log, a ``trainer_state.json`` or an MLflow run (``mlflow:RUN_ID@URI``).
        more: further files or folders of the same run, joined into it (the summary
            in one place, the logger's folder in another).

    Raises:
        RunReadError: a path does not exist, or none holds any of the formats.
    """
    paths = [path, *more]
    first = str(path)
    if first.startswith("mlflow:"):
        from green_callbacks.analysis.loggers import read_mlflow

        run = read_mlflow(first)
        paths.pop(0)
    else:
        run = RunRecord(first)
    for one in paths:
        _read_into(run, one, alone=len(paths) == 1 and not run.formats)
    if not run.formats:
        raise RunReadError(
            f"{', '.join(map(str, paths))} holds no run this package can read: looked for an "
            f"energy summary ({', '.join(SUMMARY_NAMES)}), a trace ({', '.join(TRACE_NAMES)}), "
            f"a CSV log ({', '.join(HISTORY_NAMES)}, or any CSV with an epoch column), a "
            "Hugging Face trainer_state.json and TensorBoard event files, in a folder and in "
            f"its folders {SEARCH_DEPTH} deep; an MLflow run is "
            "mlflow:RUN_ID@TRACKING_URI" + "".join(f". {note}" for note in run.notes)
        )
    if more:
        run.notes.append("joined from " + ", ".join(str(p) for p in (path, *more)))
    _fill_missing(run)
    return run


def _read_into(run: RunRecord, path: str | Path, *, alone: bool) -> None:
    """Read what ``path`` holds into ``run``; ``alone``: it is the run's only path, so the
    version folder a run_dir of several runs resolves to becomes the run's source."""
    where = Path(path)
    if where.match(TFEVENTS):
        where = where.parent
    if not where.exists():
        raise RunReadError(
            f"{where} does not exist; give a run folder, a summary, a trace or a log"
        )
    if where.is_file():
        _read_file(where, run)
        _read_hparams(where.parent, run)
        return
    from green_callbacks.analysis.loggers import read_tensorboard

    folders = _run_folders(where, run)
    if alone and len(folders) == 1 and folders[0] != where:
        run.source = str(folders[0])  # a run_dir of several runs: the version folder read
    for folder in folders:
        for file in _candidates(folder):
            _read_file(file, run)
        read_tensorboard(folder, run)
        _read_hparams(folder, run)


SEARCH_DEPTH = 3
"""How deep :func:`read_run` looks under an output folder for the folders of one run."""
SEARCH_FOLDERS = 200
"""The most folders it looks into: an output folder is not a whole disk."""


def _run_folders(top: Path, run: RunRecord) -> list[Path]:
    """The folders under ``top`` (itself included, :data:`SEARCH_DEPTH` deep) that hold what
    one run wrote: the summary, the loggers' folders (``csv/version_0``, ``lightning_logs/
    version_3``, TensorBoard's), the run folder. Of ``version_N`` folders side by side only
    the newest is read, as the last run's (noted); several found are joined into one run."""
    found: list[Path] = []
    level, seen = [top], 0
    for depth in range(SEARCH_DEPTH + 1):
        below: list[Path] = []
        for folder in level:
            seen += 1
            if _candidates(folder) or any(folder.glob(TFEVENTS)):
                found.append(folder)
            if depth == SEARCH_DEPTH or seen > SEARCH_FOLDERS:
                continue
            try:
                children = sorted(c for c in folder.iterdir() if c.is_dir())
            except OSError:
                continue
            numbered = versions(folder)
            if len(numbered) > 1:
                run.notes.append(
                    f"read {numbered[-1][1]}, the newest of {len(numbered)} runs in {folder} "
                    "(give a version folder to read another)"
                )
            older = {path for _, path in numbered[:-1]}
            below += [c for c in children if c not in older and not _skipped(c.name)]
        level = below
    if len(found) > 1:
        run.notes.append(
            "joined into one run: " + ", ".join(str(f.relative_to(top)) or "." for f in found)
        )
    return found


def _skipped(name: str) -> bool:
    """Folders that hold no run of their own: hidden ones, caches, HF's checkpoints (their
    newest trainer_state.json is read from the output folder itself)."""
    return name.startswith((".", "__", "checkpoint-"))


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
        if file.suffix in (".jsonl", ".csv"):  # line by line: a long log is never held whole
            with file.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
                if file.name.startswith("history") and file.suffix == ".jsonl":
                    _read_history(handle, file, run)
                elif file.suffix == ".jsonl":
                    _read_trace(handle, file, run)
                else:
                    _read_csv(handle, file, run)
            return
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        run.notes.append(f"{file} could not be read ({err})")
        return
    if file.suffix == ".json":
        try:
            data = parse_json(text)
        except ValueError as err:
            run.notes.append(f"{file} is not complete JSON ({err}); skipped")
            return
        if isinstance(data, dict) and "log_history" in data:
            _read_hf_state(data, file, run)
        elif isinstance(data, dict) and "totals" in data:
            _read_summary(data, file, run)
        elif file.name == FACTS and isinstance(data, dict):
            _add_facts(data, file, run)
            run.formats.append("facts")
        else:
            run.notes.append(f"{file} is JSON of no known kind (no 'totals', no 'log_history')")


def _read_summary(data: Mapping[str, Any], file: Path, run: RunRecord) -> None:
    def wrong(name: str, value: Any, wanted: str) -> None:
        _wrong(run, file, name, value, wanted)

    totals = job_totals(data)
    if totals.get("processes"):
        run.notes.append(
            f"a job of {totals['processes']} processes: the total is the job's; the energy by "
            "domain and the sources are rank 0's share"
        )
    if "energy_j" not in totals:
        run.notes.append("the summary has no totals (a run that never started, or an old format)")
    else:
        for name in ("energy_j", "duration_s"):
            value = finite(totals.get(name), minimum=0.0)
            if value is None and name in totals:
                wrong(f"totals.{name}", totals.get(name), "a finite number >= 0")
            setattr(run, "total_j" if name == "energy_j" else name, value)
        kind = totals.get("kind")
        run.energy_kind = kind if isinstance(kind, str) else None
        if kind is not None and not isinstance(kind, str):
            wrong("totals.kind", kind, "text")
        domains = totals.get("domains")
        if isinstance(domains, Mapping):
            for name, joules in domains.items():
                value = finite(joules, minimum=0.0)
                if value is None:
                    wrong(f"totals.domains[{str(name)!r}]", joules, "a finite number >= 0")
                else:
                    run.by_domain[str(name)] = value
        elif domains is not None:
            wrong("totals.domains", domains, "a mapping of domain to joules")
        sources = totals.get("sources")
        if sources is not None and not isinstance(sources, list):
            wrong("totals.sources", sources, "a list of sources")
        run.energy_source = (
            ", ".join(
                f"{s.get('domain')}={s.get('kind')} ({s.get('source')} {s.get('method')})"
                for s in (sources if isinstance(sources, list) else [])
                if isinstance(s, Mapping)
            )
            or None
        )
    notes, facts = data.get("notes"), data.get("facts")
    if isinstance(notes, list):
        run.notes += [str(n) for n in notes]
    elif notes is not None:
        wrong("notes", notes, "a list")
    if isinstance(facts, Mapping):
        _add_facts(facts, file, run)
    elif facts is not None:
        wrong("facts", facts, "a mapping")
    run.formats.append("summary")


FACT_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "params": ("a count", lambda v: finite(v, minimum=0.0) is not None),
    "size_bytes": ("a count", lambda v: finite(v, minimum=0.0) is not None),
    "inference_j_per_sample": ("a number >= 0", lambda v: finite(v, minimum=0.0) is not None),
    "python_time_share": ("a share from 0 to 1", lambda v: finite(v, minimum=0.0) is not None
                          and v <= 1),
    "line_calls_per_sample": ("a number >= 0", lambda v: finite(v, minimum=0.0) is not None),
    "busiest_line": ("a path:line", lambda v: isinstance(v, str)),
    "dtypes": ("a list of names", lambda v: isinstance(v, list) and
               all(isinstance(d, str) for d in v)),
    "architecture": ("a name", lambda v: isinstance(v, str)),
    "inference_loop": ("a loop's name", lambda v: isinstance(v, str)),
    "loaded_weights": ("true or false", lambda v: isinstance(v, bool)),
    "checkpoints": ("a list of saves", lambda v: isinstance(v, list) and
                    all(isinstance(c, dict) for c in v)),
    "oom_events": ("a list of events", lambda v: isinstance(v, list) and
                   all(isinstance(c, dict) for c in v)),
}  # fmt: skip
"""The facts the advisor and the report read, each with the shape they need."""


def _add_facts(facts: Mapping[str, Any], file: Path, run: RunRecord) -> None:
    """``facts`` into the record; one of :data:`FACT_KINDS` of the wrong shape is a note."""
    for name, value in facts.items():
        kind = FACT_KINDS.get(str(name))
        if kind is not None and value is not None and not kind[1](value):
            _wrong(run, file, f"facts.{name}", value, kind[0])
        else:
            run.facts[str(name)] = value


def _wrong(run: RunRecord, file: Path, name: str, value: Any, wanted: str) -> None:
    shown = reprlib.repr(value)  # bounded, however large or deep the value
    run.notes.append(f"{file}: {name} is {shown}, not {wanted}; left out")


def _read_trace(lines: Iterable[str], file: Path, run: RunRecord) -> None:
    steps = _Steps(MAX_WINDOWS)
    bad = last_bad = number = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
        except ValueError:
            bad, last_bad = bad + 1, number
            continue
        window = _window(row)
        if window is None:
            continue
        if window["level"] == "batch":
            steps.add(window)
        else:
            run.windows.append(window)
    if bad == 1:
        where = "last line" if last_bad == number else f"line {last_bad}"
        run.notes.append(f"{file}: {where} is cut short or not JSON; the windows before it kept")
    elif bad:
        run.notes.append(f"{file}: {bad} lines are cut short or not JSON (the last: line "
                         f"{last_bad}); the other windows kept")  # fmt: skip
    if steps.merged > 1:
        run.notes.append(
            f"{file}: {steps.count} step windows, drawn as groups of {steps.merged} neighbours "
            "(energy and time summed) to keep memory bounded"
        )
    run.windows += steps.kept
    run.windows.sort(key=lambda w: w.get("start_s", 0.0))
    run.formats.append("trace")


def _window(row: Any) -> dict[str, Any] | None:
    """A trace line as a window with the fields the report reads, or None if it is not one."""
    if not isinstance(row, dict) or not isinstance(row.get("level"), str):
        return None
    energy, duration = finite(row.get("energy_j"), 0.0), finite(row.get("duration_s"), 0.0)
    if energy is None or duration is None:
        return None
    window = {**row, "energy_j": energy, "duration_s": duration}
    start = finite(row.get("start_s"))
    if start is None:
        window.pop("start_s", None)
    else:
        window["start_s"] = start
    return window


class _Steps:
    """Step windows kept in at most ``limit`` entries: beyond, neighbours are merged in pairs."""

    def __init__(self, limit: int):
        self.limit, self.merged, self.count = limit, 1, 0
        self.windows: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the group being filled
        self._in_open = 0

    def add(self, window: dict[str, Any]) -> None:
        self.count += 1
        if self._open is None:
            self._open, self._in_open = dict(window), 1
        else:
            self._open = _joined(self._open, window)
            self._in_open += 1
        if self._in_open == self.merged:
            self.windows.append(self._open)
            self._open = None
            if len(self.windows) > self.limit:
                pairs = zip(self.windows[0::2], self.windows[1::2], strict=False)
                rest = self.windows[-1:] if len(self.windows) % 2 else []
                self.windows = [_joined(a, b) for a, b in pairs] + rest
                self.merged *= 2

    @property
    def kept(self) -> list[dict[str, Any]]:
        return self.windows + ([self._open] if self._open is not None else [])


def _joined(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    joined = dict(first)
    joined["energy_j"] = first["energy_j"] + second["energy_j"]
    joined["duration_s"] = first["duration_s"] + second["duration_s"]
    return joined


def _read_history(lines: Iterable[str], file: Path, run: RunRecord) -> None:
    bad = {"first": 0, "count": 0}  # lines that are not JSON

    def entries() -> Iterator[Any]:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    yield parse_json(line)
                except ValueError:
                    bad["first"] = bad["first"] or number
                    bad["count"] += 1

    _add_epochs(run, file, entries(), int)
    if bad["count"]:
        first, count = bad["first"], bad["count"]
        what = f"line {first} is" if count == 1 else f"{count} lines (the first: {first}) are"
        run.notes.append(f"{file}: {what} cut short or not JSON; skipped")
    run.formats.append("history")


def _read_csv(handle: Iterable[str], file: Path, run: RunRecord) -> None:
    reader = csv.DictReader(handle)
    if reader.fieldnames is None or "epoch" not in reader.fieldnames:
        run.notes.append(f"{file} has no epoch column; not a training log")
        return
    _add_epochs(run, file, reader, int)  # Lightning writes several rows per epoch
    run.formats.append("csv-log")


def _read_hf_state(data: Mapping[str, Any], file: Path, run: RunRecord) -> None:
    history = data.get("log_history")
    if not isinstance(history, list):
        run.notes.append(f"{file}: log_history is not a list; no epochs read from it")
        history = []
    # HF's epoch 1.0 ends the first epoch; 0.5 is half-way through it
    _add_epochs(run, file, history, lambda e: max(math.ceil(e - 1e-6) - 1, 0))
    run.formats.append("hf-state")


def _add_epochs(
    run: RunRecord, file: Path, entries: Iterable[Any], index: Callable[[float], int]
) -> None:
    rows = _EpochRows(index, MAX_EPOCH_ROWS)
    for entry in entries:
        rows.add(entry)
    if rows.unnumbered:
        run.notes.append(
            f"{file}: {rows.unnumbered} entries with an epoch that is not a number from 0 "
            "were left out"
        )
    for key, count in sorted(rows.negative.items()):
        run.notes.append(f"{file}: {key} was negative in {count} entries; those left out")
    if rows.stride > 1:
        run.epoch_stride = max(run.epoch_stride, rows.stride)
        run.notes.append(
            f"{file}: {rows.epochs} epochs, read as groups of {rows.stride} consecutive epochs "
            "(energy summed over each group, every other metric its last value) to keep "
            "memory bounded"
        )
    merge_epochs(run, rows.rows())


class _EpochRows:
    """Logged entries as one row per epoch, at most ``limit`` rows.

    In an epoch the last number of each key wins. Past ``limit`` rows the
    stride doubles: each row then holds that many consecutive epochs, the
    per-epoch energies (:data:`SUMMED_SUFFIXES`) summed and every other
    metric the last epoch's. Memory is bounded by ``limit``, not by the log.
    """

    def __init__(self, index: Callable[[float], int], limit: int):
        self.index, self.limit, self.stride = index, limit, 1
        self.groups: dict[int, dict[str, list[float]]] = {}  # key -> [sum before, epoch, value]
        self.last_epoch: dict[int, int] = {}
        self.unnumbered = 0
        self.negative: dict[str, int] = {}
        self.epochs = 0  # one past the highest epoch seen

    def add(self, entry: Any) -> None:
        if not isinstance(entry, Mapping) or "epoch" not in entry:
            return
        number = finite(entry.get("epoch"), minimum=0.0)
        if number is None or number > 2**53:
            self.unnumbered += 1
            return
        epoch = self.index(number)
        self.epochs = max(self.epochs, epoch + 1)
        at = epoch // self.stride
        group = self.groups.setdefault(at, {})
        self.last_epoch[at] = max(self.last_epoch.get(at, 0), epoch)
        for key, raw in entry.items():
            value = finite(raw)
            if key in ("epoch", "step") or value is None:
                continue
            key = str(key)
            if value < 0 and key.startswith(NON_NEGATIVE_PREFIXES):
                self.negative[key] = self.negative.get(key, 0) + 1
                continue
            held = group.get(key)
            if held is None:
                group[key] = [0.0, float(epoch), value]
            elif key.endswith(SUMMED_SUFFIXES) and held[1] != epoch:
                held[0] += held[2]
                held[1:] = [float(epoch), value]
            elif epoch >= held[1]:
                held[1:] = [float(epoch), value]
        if len(self.groups) > self.limit:
            self._widen()

    def _widen(self) -> None:
        self.stride *= 2
        groups, lasts = self.groups, self.last_epoch
        self.groups, self.last_epoch = {}, {}
        for number in sorted(groups):
            into = self.groups.setdefault(number // 2, {})
            self.last_epoch[number // 2] = max(self.last_epoch.get(number // 2, 0), lasts[number])
            for key, (before, epoch, value) in groups[number].items():
                held = into.get(key)
                if held is None:
                    into[key] = [before, epoch, value]
                elif key.endswith(SUMMED_SUFFIXES):
                    into[key] = [held[0] + held[2] + before, epoch, value]
                else:
                    into[key] = [0.0, epoch, value]

    def rows(self) -> list[dict[str, float]]:
        found = []
        for number in sorted(self.groups):
            epoch = self.last_epoch[number]
            row: dict[str, float] = {"epoch": epoch}
            for key, (before, _, value) in self.groups[number].items():
                row[key] = before + value if key.endswith(SUMMED_SUFFIXES) else value
            found.append(row)
        return found


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
