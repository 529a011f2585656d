"""The Keras adapter's whole test module on each installed Keras backend.

A process has one Keras backend, chosen by ``KERAS_BACKEND`` before Keras is
imported, so each backend runs the Keras tests in a subprocess of its own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("keras", reason="needs the 'keras' extra")

KERAS_TESTS = Path(__file__).parents[1] / "tests" / "keras"
BACKEND_MODULES = {"tensorflow": "tensorflow", "torch": "torch"}


@pytest.mark.parametrize("backend", sorted(BACKEND_MODULES))
def test_keras_adapter_passes_on_backend(backend: str) -> None:
    if importlib.util.find_spec(BACKEND_MODULES[backend]) is None:
        pytest.skip(f"Keras backend {backend} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(KERAS_TESTS)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " skipped" not in done.stdout
