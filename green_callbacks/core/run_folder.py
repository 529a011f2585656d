"""A run folder: everything a run needs for later (report, advice) in one place.

``EnergyCallback(run_dir=ROOT)`` gives each run its own folder,
``ROOT/version_0``, ``ROOT/version_1``... as Lightning's loggers do: a run never
appends to an earlier one's files. The number is one past the highest there,
claimed by creating the folder (atomic: two runs starting at once get two
folders). An evaluation after a run (``fit`` then ``test``) and a retry
after an out-of-memory error keep the run's folder. It writes there:

- ``summary.json``: the end-of-run summary, with ``facts`` (the model's
  parameters and dtypes, checkpoint saves...);
- ``trace.jsonl``: every metering window (unless ``trace_path`` says elsewhere);
- ``history.jsonl``: one JSON object per training epoch: the energy figures,
  the user's own metrics (``val_acc``...), the share of step time spent
  waiting for data and the process's resident memory.

:func:`green_callbacks.analysis.read_run` reads it back. Writes never raise
into training: a failed write is a warning (an error in strict mode).

Example:
    >>> import json, pathlib, tempfile
    >>> folder = RunFolder(pathlib.Path(tempfile.mkdtemp()))
    >>> folder.append_epoch({"epoch": 0, "val_acc": 0.5}, strict=False)
    >>> json.loads(folder.history.read_text())["val_acc"]
    0.5
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> [RunFolder.claim(root).root.name for _ in range(2)], newest_version(root).name
    (['version_0', 'version_1'], 'version_1')
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import psutil

from green_callbacks.errors import output_failed

SUMMARY = "summary.json"
TRACE = "trace.jsonl"
HISTORY = "history.jsonl"
VERSION = "version_"
MIB = 2**20
BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4,
         "int16": 2, "int8": 1, "uint8": 1, "bool": 1}  # fmt: skip


class RunFolder:
    """The files of one run folder.

    Args:
        root: the folder (created on the first write).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def claim(cls, run_dir: str | Path) -> RunFolder:
        """Create the next ``version_N`` under ``run_dir`` (made if missing) for a new run.

        Raises:
            OSError: ``run_dir`` cannot be created or written.
        """
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        number = max((n for n, _ in versions(run_dir)), default=-1) + 1
        while True:
            try:
                (run_dir / f"{VERSION}{number}").mkdir()
            except FileExistsError:  # another run took it since the listing
                number += 1
            else:
                return cls(run_dir / f"{VERSION}{number}")

    @property
    def version(self) -> int | None:
        """N of a ``version_N`` folder (None for a folder named otherwise)."""
        return _version_number(self.root)

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def trace(self) -> Path:
        return self.root / TRACE

    @property
    def history(self) -> Path:
        return self.root / HISTORY

    def append_epoch(self, row: dict[str, Any], *, strict: bool) -> None:
        """Append one epoch's figures to ``history.jsonl`` (finite numbers and text only).

        Args:
            row: ``epoch`` and the figures of that epoch.
            strict: raise instead of warning when the write fails.
        """
        clean = {k: v for k, v in row.items() if not isinstance(v, float) or math.isfinite(v)}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with self.history.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(clean) + "\n")
        except (OSError, TypeError, ValueError) as err:
            output_failed(f"run history {self.history} cannot be written ({err})", strict=strict,
                          cause=err)  # fmt: skip


def versions(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The ``version_N`` folders in ``run_dir``, by N (none when it is not a folder)."""
    try:
        entries = list(Path(run_dir).iterdir())
    except OSError:
        return []
    found = [(_version_number(e), e) for e in entries if e.is_dir()]
    return sorted((n, e) for n, e in found if n is not None)


def newest_version(run_dir: str | Path) -> Path | None:
    """The ``version_N`` folder with the highest N in ``run_dir``, or None."""
    found = versions(run_dir)
    return found[-1][1] if found else None


def _version_number(path: Path) -> int | None:
    digits = path.name.removeprefix(VERSION)
    numbered = path.name.startswith(VERSION) and digits.isascii() and digits.isdecimal()
    return int(digits) if numbered else None


def process_cpu_s() -> float:
    """CPU time this process has used so far (user and system, all threads). Units: s."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def cpu_utilization(cpu_s: float, wall_s: float) -> float | None:
    """Share of the machine's logical CPUs this process kept busy over ``wall_s``.

    Args:
        cpu_s: CPU time used in that span. Units: s.
        wall_s: the span. Units: s.

    Example:
        >>> cpu_utilization(cpu_s=2.0, wall_s=1.0) == 2.0 / (psutil.cpu_count() or 1)
        True
    """
    if wall_s <= 0:
        return None
    return min(cpu_s / (wall_s * (psutil.cpu_count() or 1)), 1.0)


def host_rss_mib() -> float:
    """This process's resident memory now. Units: MiB."""
    return float(psutil.Process().memory_info().rss) / MIB


def model_facts(params: Any) -> dict[str, Any]:
    """Parameter count, dtypes and size of a model's parameters (torch tensors or arrays).

    Args:
        params: the model's parameter tensors (``module.parameters()``, ``model.weights``).

    Example:
        >>> import numpy as np
        >>> model_facts([np.zeros((3, 4), "float32"), np.zeros(4, "float32")])
        {'params': 16, 'dtypes': ['float32'], 'size_bytes': 64}
    """
    count = size = 0
    dtypes: set[str] = set()
    for tensor in params:
        shape = tuple(int(d) for d in getattr(tensor, "shape", ()))
        n = math.prod(shape)
        dtype = str(getattr(tensor, "dtype", "unknown")).removeprefix("torch.")
        dtype = dtype.removeprefix("<dtype: '").removesuffix("'>")
        item = getattr(tensor, "element_size", None)  # torch
        width = item() if callable(item) else getattr(getattr(tensor, "dtype", None), "itemsize", 0)
        width = width or BYTES.get(dtype, 0)  # Keras variables name their dtype as text
        count += n
        size += n * int(width or 0)
        dtypes.add(dtype)
    return {"params": count, "dtypes": sorted(dtypes), "size_bytes": size}
