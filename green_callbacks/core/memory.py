"""What this process uses of the machine's memory: probes, no decisions.

Example:
    >>> used, limit = host_memory()
    >>> 0 < used < limit
    True
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from green_callbacks.errors import TooLargeError

MIB = 2**20
"""Bytes in a mebibyte."""
CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")


def host_memory(cgroup_limit: Path = CGROUP_LIMIT) -> tuple[float, float]:
    """This process's resident memory, and the most it may use (cgroup limit or RAM). Units: B.

    Args:
        cgroup_limit: the container's memory limit file (cgroup v2), read when present.
    """
    import psutil

    limit = float(psutil.virtual_memory().total)
    try:  # a container's cgroup v2 limit, when lower than the machine's RAM
        text = cgroup_limit.read_text().strip()
        if text.isdigit():
            limit = min(limit, float(text))
    except OSError:
        pass
    return float(psutil.Process().memory_info().rss), limit


def host_peak_rss() -> float:
    """The most resident memory this process has used so far. Units: bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024)  # KiB on Linux


def refuse_unless_fits(what: str, need_bytes: float, fix: str, *, share: float = 0.8) -> None:
    """Raise before allocating ``need_bytes`` when they exceed ``share`` of the memory free now.

    Free memory is the machine's available RAM, within a container's cgroup
    limit. An estimate of a size from the user (a prompt of 10^9 tokens)
    meets a clear error here instead of the allocator's, minutes or hundreds
    of GB later.

    Args:
        what: what needs the memory, for the message.
        need_bytes: the estimate. Units: bytes.
        fix: what to change, for the message.

    Raises:
        TooLargeError: it would not fit.
    """
    import psutil

    used, limit = host_memory()
    free = min(float(psutil.virtual_memory().available), max(limit - used, 0.0))
    if need_bytes > share * free:
        raise TooLargeError(
            f"{what} needs about {_gib(need_bytes)}, more than this machine has free "
            f"({_gib(free)}); {fix}"
        )


def _gib(size: float) -> str:
    gib = size / 2**30
    return f"{gib:.3g} GiB" if gib < 1000 else f"{gib:,.0f} GiB"


DeviceMemory = tuple[float, float | None]
"""Accelerator memory allocated now and its total (None if unknown). Units: bytes."""


def device_memory(backend: str, device: Any = None) -> DeviceMemory | None:
    """Memory allocated on the accelerator of ``backend`` (``"torch"``, ``"tensorflow"``), if any.

    ``device``: the torch device (default: the current one). The framework is
    imported here, only when asked about.
    """
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            total = float(torch.cuda.mem_get_info(device)[1])
            return float(torch.cuda.memory_allocated(device)), total
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return float(tf.config.experimental.get_memory_info("GPU:0")["current"]), None
    return None


def measured_peak(backend: str, run: Callable[[], object], device: Any = None) -> tuple[float, str]:
    """Run ``run`` and return the memory peak it reached, and where that figure comes from.

    The accelerator's peak allocated memory (reset first) when ``backend`` has
    one, else this process's peak resident memory. Units: bytes.
    """
    probe = _device_peak(backend, device)
    if probe is None:
        run()
        return host_peak_rss(), "host peak RSS"
    reset, peak = probe
    reset()
    run()
    return peak(), f"{backend} device peak allocated"


def _device_peak(
    backend: str, device: Any
) -> tuple[Callable[[], object], Callable[[], float]] | None:
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return (
                lambda: torch.cuda.reset_peak_memory_stats(device),
                lambda: float(torch.cuda.max_memory_allocated(device)),
            )
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return (
                lambda: tf.config.experimental.reset_memory_stats("GPU:0"),
                lambda: float(tf.config.experimental.get_memory_info("GPU:0")["peak"]),
            )
    return None
