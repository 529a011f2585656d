"""benchmarks/gpu_check.py without a GPU: one clear line and exit status 2, nothing else run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def test_without_a_gpu_it_says_so_and_exits_2() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2
    assert "no NVIDIA GPU visible to torch" in done.stderr and "nothing checked" in done.stderr
    assert "checking:" not in done.stderr and done.stdout == ""
