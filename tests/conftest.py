"""Shared fixtures. Every fake here is named as one."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Keras 3 tests run on the torch backend unless KERAS_BACKEND says otherwise
# (integrations/test_keras_backends.py runs them on every installed backend).
os.environ.setdefault("KERAS_BACKEND", "torch")

from green_callbacks.testing import FakeClock, FakePowercapTree

NOBODY_UID = 65534


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def powercap(tmp_path: Path) -> FakePowercapTree:
    """A fake powercap tree: two packages, each with core and dram sub-zones."""
    tree = FakePowercapTree(tmp_path / "powercap")
    for socket in (0, 1):
        tree.add_zone(f"intel-rapl:{socket}", f"package-{socket}", max_range_uj=1_000_000)
        tree.add_zone(f"intel-rapl:{socket}:0", "core", max_range_uj=1_000_000)
        tree.add_zone(f"intel-rapl:{socket}:1", "dram", max_range_uj=500_000)
    return tree


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A temp folder an unprivileged user can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="gc-powercap-"))
    path.chmod(0o755)
    yield path
    for child in sorted(path.rglob("*"), reverse=True):
        child.chmod(0o700)
        child.unlink() if child.is_file() else child.rmdir()
    path.rmdir()


@contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block without root, so file permissions apply as they do to users.

    As root, switches the effective uid to nobody and back; as a user, does nothing.
    """
    if os.geteuid() != 0:
        yield
        return
    # nobody cannot read root's Python install: import what the block uses first.
    import psutil

    psutil.cpu_times()
    psutil.virtual_memory()
    os.seteuid(NOBODY_UID)
    try:
        yield
    finally:
        os.seteuid(0)


def make_unreadable(path: Path) -> None:
    path.chmod(stat.S_IWUSR)  # 0200: like the kernel's root-only energy_uj, nobody else reads it
