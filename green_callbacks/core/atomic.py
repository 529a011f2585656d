"""One way to write a file or a folder that a crash never leaves torn.

Everything the package saves (checkpoints, Keras backups, summaries, reports,
run state) goes through here: the content is written under a hidden part name
next to its target, flushed to the disk (``fsync`` of the file, or of every
file in a folder), renamed over the target with ``os.replace``, and the
folder holding it is flushed too, so that the rename itself survives a power
loss. A process killed at any point leaves either the previous version or the
new one, never an empty or half-written file.

Only regular files (and, for folders, folders) are ever replaced: a device,
a pipe or a folder at a file's path is refused with :class:`UnsafeTargetError`
instead of being swapped for a regular file.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_json_atomic(folder / "state.json", {"energy_j": 12.5})
    >>> atomic_write(folder / "note.txt", lambda part: part.write_text("saved"))
    >>> sorted(p.name for p in folder.iterdir())
    ['note.txt', 'state.json']
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from green_callbacks.errors import UnsafeTargetError

PART_PREFIX = ".part-"


def part_path(path: Path) -> Path:
    """Where ``path``'s next version is written before it is renamed into place.

    Hidden, next to ``path`` (a rename across file systems is not atomic), and
    ending like ``path``: writers that insist on a suffix (``.weights.h5``) accept it.
    """
    return path.with_name(f"{PART_PREFIX}{path.name}")


def check_target(path: Path, *, folder: bool = False) -> None:
    """Refuse to replace anything but a regular file (or a folder, for ``folder=True``)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    wanted, what = (stat.S_ISDIR, "a folder") if folder else (stat.S_ISREG, "a regular file")
    if not wanted(mode):
        raise UnsafeTargetError(
            f"{path} exists and is not {what}; green_callbacks replaces only {what} there "
            "(a device, a pipe or a folder is never overwritten); choose another path"
        )


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Run ``write(part)`` to fill a part file, then make it ``path`` in one step.

    Args:
        path: the file to create or replace.
        write: writes the whole content to the path it is given (``torch.save``,
            ``model.save_weights``, ``Path.write_text``...).

    A failing ``write`` leaves ``path`` as it was and removes the part file.
    """
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(path)
    discard(part)
    try:
        write(part)
        commit(part, path)
    except BaseException:
        discard(part)
        raise


def commit(part: Path, path: Path) -> None:
    """Flush ``part`` (a file or a folder) to disk and rename it over ``path``.

    For writers that must fill ``part_path(path)`` themselves (every process
    of a distributed save writes, one commits).
    """
    check_target(path, folder=part.is_dir())
    if part.is_dir():
        for child in part.rglob("*"):
            if child.is_file():
                _fsync(child)
        _fsync_dir(part)
    else:
        _fsync(part)
    os.replace(part, path)
    _fsync_dir(path.parent)


def atomic_folder(path: str | Path, fill: Callable[[Path], object]) -> None:
    """Run ``fill(part)`` to fill a new folder, then rename it to ``path`` (not there yet)."""
    path = Path(path)
    part = part_path(path)
    discard(part)
    part.mkdir(parents=True)
    try:
        fill(part)
        commit(part, path)
    except BaseException:
        discard(part)
        raise


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as strict JSON (no NaN or infinity), atomically."""
    text = json.dumps(payload, indent=2, allow_nan=False)
    atomic_write(path, lambda part: part.write_text(text, encoding="utf-8"))


def link_atomic(target: Path, link: Path) -> None:
    """Make ``link`` a second name of ``target`` atomically (a copy where links fail)."""

    def write(part: Path) -> None:
        try:
            os.link(target, part)
        except OSError:
            shutil.copyfile(target, part)

    atomic_write(link, write)


def discard(part: Path) -> None:
    """Remove a leftover part file or folder, if any."""
    if part.is_dir() and not part.is_symlink():
        shutil.rmtree(part, ignore_errors=True)
    else:
        part.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform that cannot open folders: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
