"""The machine and software a measurement ran on: recorded with every ledger.

Example:
    >>> info = machine()
    >>> info["logical_cores"] == os.cpu_count() and "green-callbacks" in info["packages"]
    True
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

PACKAGES = ("torch", "lightning", "keras", "tensorflow", "transformers", "jax", "numpy")
"""The packages whose versions are recorded beside the machine."""


def machine() -> dict[str, Any]:
    """The machine and software: platform, Python, CPU, cores, memory, governor, packages, GPUs."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "packages": {},
    }
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor.exists():
        info["cpu_governor"] = governor.read_text().strip()
    for name in ("green-callbacks", *PACKAGES):
        try:
            info["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    info["gpus"] = _gpus()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpus() -> list[str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            return [str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                    for i in range(count)]  # fmt: skip
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: no GPU to record
        return []
