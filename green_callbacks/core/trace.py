"""Optional per-window trace: one JSON line per closed window, in a file the user names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from green_callbacks.core.records import WindowResult
from green_callbacks.errors import warn


class TraceWriter:
    """Appends window results as JSON lines; a failed write disables the trace, never training.

    Args:
        path: the JSONL file; its folder is created if needed.
        strict: re-raise write errors instead of warning and disabling the trace.
    """

    def __init__(self, path: Path, *, strict: bool = False):
        self.path = path
        self._strict = strict
        self._file: IO[str] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError as err:
            self._fail(err)

    def write(self, result: WindowResult) -> None:
        if self._file is None:
            return
        row = {
            "level": result.level,
            "name": result.name,
            "start_s": result.start_s,
            "duration_s": result.duration_s,
            "energy_j": result.energy_j,
            "domains": result.energy_by_domain,
            "interpolated": result.interpolated,
        }
        try:
            self._file.write(json.dumps(row) + "\n")
            if result.level != "batch":
                self._file.flush()
        except OSError as err:
            self._fail(err)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as err:
                self._fail(err)
            self._file = None

    def _fail(self, err: OSError) -> None:
        self._file = None
        if self._strict:
            raise err
        warn(
            f"trace file {self.path} cannot be written ({err}); "
            "the trace is off for the rest of the run, training goes on"
        )
