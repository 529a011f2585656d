"""The one atomic writer: a crash never leaves a torn file, and only regular files are replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from green_callbacks.core.atomic import (
    atomic_folder,
    atomic_write,
    link_atomic,
    part_path,
    write_json_atomic,
)
from green_callbacks.errors import GreenCallbacksError, UnsafeTargetError

KILLED_BETWEEN_WRITE_AND_RENAME = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from green_callbacks.core import atomic

    target = Path(sys.argv[1])
    atomic.write_json_atomic(target, {"checkpoint": 1})

    def killed_at_commit(part, path):  # the new version is written, not yet renamed
        os.kill(os.getpid(), signal.SIGKILL)

    atomic.commit = killed_at_commit
    atomic.write_json_atomic(target, {"checkpoint": 2})
    """
)


def test_a_process_killed_between_write_and_rename_keeps_the_previous_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "last.json"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_BETWEEN_WRITE_AND_RENAME, str(target)], check=False
    )

    assert done.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"checkpoint": 1}  # the previous save, whole
    assert json.loads(part_path(target).read_text()) == {"checkpoint": 2}  # the torn attempt
    write_json_atomic(target, {"checkpoint": 3})  # the next save clears the leftover
    assert json.loads(target.read_text()) == {"checkpoint": 3}
    assert not part_path(target).exists()


def test_a_failing_writer_leaves_the_target_and_no_part_file(tmp_path: Path) -> None:
    target = tmp_path / "model.ckpt"
    target.write_text("previous")

    def disk_full(part: Path) -> None:
        part.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, disk_full)
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]


@pytest.mark.parametrize("kind", ["device", "folder"])
def test_only_regular_files_are_replaced(tmp_path: Path, kind: str) -> None:
    if kind == "device":
        target = Path(os.devnull)
    else:
        target = tmp_path / "summary.json"
        target.mkdir()
    with pytest.raises(UnsafeTargetError, match="is not a regular file"):
        write_json_atomic(target, {"energy_j": 1.0})
    assert Path(os.devnull).is_char_device() and (kind == "device" or target.is_dir())


def test_unsafe_targets_are_package_errors_and_value_errors() -> None:
    assert issubclass(UnsafeTargetError, GreenCallbacksError)
    assert issubclass(UnsafeTargetError, ValueError)


def test_json_is_strict(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_json_atomic(tmp_path / "bad.json", {"energy_j": float("nan")})
    assert not list(tmp_path.iterdir())


def test_folders_appear_whole_and_links_replace_atomically(tmp_path: Path) -> None:
    def fill(part: Path) -> None:
        (part / "model.weights.h5").write_bytes(b"w" * 100)
        (part / "state.json").write_text("{}")

    atomic_folder(tmp_path / "backup-1", fill)
    (tmp_path / "a.ckpt").write_text("a")
    (tmp_path / "b.ckpt").write_text("b")
    link_atomic(tmp_path / "a.ckpt", tmp_path / "last.ckpt")
    link_atomic(tmp_path / "b.ckpt", tmp_path / "last.ckpt")

    assert sorted(p.name for p in (tmp_path / "backup-1").iterdir()) == [
        "model.weights.h5", "state.json",
    ]  # fmt: skip
    assert (tmp_path / "last.ckpt").read_text() == "b"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".part-")]
