"""The run ledger: one record per measured run, each saying exactly what produced it.

Every tool that measures the same thing repeatedly and resumes (``study run``,
``serve-sweep``, ``hpo compare``) keeps its runs here, in ``runs.jsonl``:

- the first line is the ledger's header: the tool, its *definition* (everything
  that shapes every figure in the folder: the study file's content, the model,
  the meters, the limits, the package's version) and the definition's
  fingerprint;
- every other line is one run's record, appended and flushed to disk
  (``fsync``) before the next run starts, carrying its ``key`` (what tells it
  from the other runs of the same definition: a run's place in the plan, a
  stream and policy) and its ``fingerprint`` (of the definition and the key).

Opening a ledger takes an exclusive lock on the folder (``.runs.lock``, held
by the kernel, so a process killed with SIGKILL releases it): a second writer
gets :class:`LedgerLockedError` naming the holder's PID. A folder whose
header holds another definition is refused with :class:`LedgerMismatchError`,
naming the fields that differ; ``force_new=True`` writes a new version of the
folder beside it instead (``out-v2``, ``out-v3``...). A resume therefore
re-measures exactly the runs whose fingerprint is missing, and never mixes
figures that came from different definitions.

Reading never raises: a torn last line (a crash mid-write) or a damaged line
becomes a note, and that run is measured again.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with Ledger.open(folder, "example", {"model": "mlp"}) as ledger:
    ...     _ = ledger.append({"index": 0}, {"energy_j": 1.5})
    >>> with Ledger.open(folder, "example", {"model": "mlp"}) as ledger:
    ...     ledger.get({"index": 0})["energy_j"]
    1.5
    >>> Ledger.open(folder, "example", {"model": "cnn"})
    Traceback (most recent call last):
    ...
    green_callbacks.core.ledger.LedgerMismatchError: ... model: 'mlp' in the folder, 'cnn' now; ...
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from green_callbacks.core.readback import parse_json
from green_callbacks.errors import ConfigError, GreenCallbacksError

LEDGER = "runs.jsonl"
LOCK = ".runs.lock"
FORMAT = 1
"""The header's ``ledger`` field: the format of the lines below it."""
SHOWN_DIFFERENCES = 5


class LedgerLockedError(GreenCallbacksError, RuntimeError):
    """Another process is writing the same folder."""


class LedgerMismatchError(ConfigError):
    """The folder holds runs of another definition; the message names what differs."""


def fingerprint(payload: Any) -> str:
    """A short stable hash of a JSON-like value (key order does not matter).

    Example:
        >>> fingerprint({"a": 1, "b": [2]}) == fingerprint({"b": [2], "a": 1})
        True
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def package_version() -> str:
    """This package's version: part of every definition (a new version may measure otherwise)."""
    from green_callbacks import __version__

    return __version__


@dataclass
class LedgerContents:
    """What a ledger file holds, read without raising.

    Attributes:
        header: the header line (None: no ledger, or a file without one).
        records: the runs' records in file order.
        notes: lines that could not be read, each named.
    """

    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_ledger(folder: str | Path) -> LedgerContents:
    """Read ``folder/runs.jsonl`` back; damaged lines become notes, never an exception.

    Args:
        folder: the tool's output folder.
    """
    path = Path(folder) / LEDGER
    contents = LedgerContents()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        if path.exists():
            contents.notes.append(f"{path} cannot be read ({err})")
        return contents
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = parse_json(line)
        except ValueError:
            torn = number == len(lines) and not text.endswith("\n")
            what = "cut short (a crash mid-write)" if torn else "not JSON"
            contents.notes.append(f"{path} line {number} is {what}: left out, measured again")
            continue
        if not isinstance(value, dict):
            contents.notes.append(f"{path} line {number} is not a JSON object: left out")
        elif number == 1 and "ledger" in value:
            contents.header = value
        elif not (isinstance(value.get("key"), dict) and isinstance(value.get("fingerprint"), str)):
            contents.notes.append(f"{path} line {number} has no key or fingerprint: left out")
        else:
            contents.records.append(value)
    return contents


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two JSON-like values differ, as ``field: old, new`` lines (dotted paths).

    Example:
        >>> differences({"factors": {"size": [1, 2]}}, {"factors": {"size": [1, 2, 3]}})
        ['factors.size: [1, 2] in the folder, [1, 2, 3] now']
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found = []
        for name in sorted(set(old) | set(new), key=str):
            where = f"{path}.{name}" if path else str(name)
            if name not in old:
                found.append(f"{where}: absent in the folder, {new[name]!r} now")
            elif name not in new:
                found.append(f"{where}: {old[name]!r} in the folder, absent now")
            else:
                found += differences(old[name], new[name], where)
        return found
    if _canonical(old) == _canonical(new):
        return []
    return [f"{path or 'definition'}: {old!r} in the folder, {new!r} now"]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class Ledger:
    """An open, locked ledger; build it with :meth:`open`, close it (or use ``with``).

    Attributes:
        folder: where it is (a new version of the folder asked for, with ``force_new``).
        definition: what every record in it was produced by.
        notes: what could not be read back when it was opened.
    """

    def __init__(self, folder: Path, tool: str, definition: dict[str, Any], handle: Any):
        self.folder = folder
        self.tool = tool
        self.definition = definition
        self.notes: list[str] = []
        self._lock = handle
        self._fingerprint = fingerprint(definition)
        self._records: dict[str, dict[str, Any]] = {}

    @classmethod
    def open(
        cls,
        folder: str | Path,
        tool: str,
        definition: Mapping[str, Any],
        *,
        force_new: bool = False,
    ) -> Ledger:
        """Lock ``folder`` and read its records; a new ledger where there is none.

        Args:
            folder: the tool's output folder (created).
            tool: which tool writes it (``study``, ``serve-sweep``...), in the header.
            definition: everything that shapes the figures, as JSON-like data; the
                package's version is added.
            force_new: when the folder already holds a ledger, write a new version
                of the folder beside it (``out-v2``...) instead of resuming or refusing.

        Raises:
            LedgerLockedError: another process holds the folder.
            LedgerMismatchError: the folder's runs came from another definition.
        """
        definition = {**definition, "package_version": package_version()}
        folder = Path(folder)
        if force_new:
            folder = next_version(folder)
        folder.mkdir(parents=True, exist_ok=True)
        handle = _lock(folder)
        try:
            ledger = cls(folder, tool, definition, handle)
            ledger._load()
        except BaseException:
            handle.close()
            raise
        return ledger

    def _load(self) -> None:
        contents = read_ledger(self.folder)
        self.notes = contents.notes
        if contents.header is None and not contents.records and not contents.notes:
            self._write_line({"ledger": FORMAT, "tool": self.tool, "definition": self.definition,
                              "fingerprint": self._fingerprint})  # fmt: skip
            return
        header = contents.header
        if header is None:
            raise LedgerMismatchError(
                f"{self.folder / LEDGER} has no ledger header (written by an older version, or "
                "not by green_callbacks): its runs cannot be matched to what produced them; "
                "pass --force-new (force_new=True) to measure into a new folder beside it, or "
                "give another output folder"
            )
        if header.get("fingerprint") != self._fingerprint:
            found = differences(header.get("definition"), self.definition)
            shown = "; ".join(found[:SHOWN_DIFFERENCES]) or "its header is damaged"
            more = f" (and {len(found) - SHOWN_DIFFERENCES} more)" if len(found) > 5 else ""
            raise LedgerMismatchError(
                f"{self.folder} holds runs of another {header.get('tool', 'tool')} definition: "
                f"{shown}{more}; resuming would mix their figures with these. Pass --force-new "
                "(force_new=True) to measure into a new folder beside it, or give another "
                "output folder"
            )
        for record in contents.records:
            if record["fingerprint"] == fingerprint([self._fingerprint, record["key"]]):
                self._records[record["fingerprint"]] = record
            else:
                self.notes.append(f"a record with key {record['key']} does not match its "
                                  "fingerprint: left out, measured again")  # fmt: skip

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The record of the run ``key`` names, if it was measured under this definition."""
        return self._records.get(fingerprint([self._fingerprint, dict(key)]))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record kept, in the order they were written."""
        return iter(list(self._records.values()))

    def append(self, key: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
        """Write one run's record, flushed to disk before this returns; returns the line.

        Args:
            key: what tells this run from the others of the definition.
            record: its figures (finite numbers, text, None).
        """
        fp = fingerprint([self._fingerprint, dict(key)])
        line = {**record, "key": dict(key), "fingerprint": fp}
        self._write_line(line)
        self._records[fp] = line
        return line

    def _write_line(self, value: Mapping[str, Any]) -> None:
        text = json.dumps(value, allow_nan=False) + "\n"
        path = self.folder / LEDGER
        with open(path, "a", encoding="utf-8") as handle:
            if handle.tell():
                with open(path, "rb") as existing:
                    existing.seek(-1, os.SEEK_END)
                    if existing.read(1) != b"\n":
                        handle.write("\n")  # after a torn last line, start a fresh one
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        """Release the folder's lock (idempotent)."""
        if not self._lock.closed:
            self._lock.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def next_version(folder: Path) -> Path:
    """``folder`` if it holds no ledger, else the first of ``folder-v2``, ``-v3``... free."""
    candidate, number = folder, 1
    while (candidate / LEDGER).exists():
        number += 1
        candidate = folder.with_name(f"{folder.name}-v{number}")
    return candidate


def _lock(folder: Path) -> Any:
    """Hold ``folder``'s lock file open with an exclusive lock; the PID written in it."""
    path = folder / LOCK
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until the ledger closes
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no kernel lock to take
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise LedgerLockedError(
            f"{folder} is being written by another process (PID {holder}); two writers "
            "would each measure under the other's load and record runs twice. Wait for it to "
            "finish (or stop it), or give another output folder"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
