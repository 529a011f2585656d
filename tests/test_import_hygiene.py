"""Importing green_callbacks must not import any deep-learning framework."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = (
    "torch",
    "tensorflow",
    "keras",
    "lightning",
    "pytorch_lightning",
    "transformers",
    "jax",
)


def test_core_imports_no_framework() -> None:
    code = (
        "import sys, green_callbacks, green_callbacks.cli, green_callbacks.meters, "
        "green_callbacks.core, green_callbacks.core.session, green_callbacks.core.keys, "
        "green_callbacks.testing, green_callbacks.policies, green_callbacks.core.signals, "
        "green_callbacks.compress, green_callbacks.serving, green_callbacks.serving.sweep, "
        "green_callbacks.serving.layers, green_callbacks.serving.tokens, "
        "green_callbacks.serving.variants, green_callbacks.serving.zoo, "
        "green_callbacks.analysis, green_callbacks.analysis.report\n"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == ""
