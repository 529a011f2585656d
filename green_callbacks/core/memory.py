"""What this process uses of the machine's memory: probes, no decisions.

Example:
    >>> used, limit = host_memory()
    >>> 0 < used < limit
    True
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

MIB = 2**20
"""Bytes in a mebibyte."""
CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")


def host_memory(cgroup_limit: Path = CGROUP_LIMIT) -> tuple[float, float]:
    """This process's resident memory, and the most it may use (cgroup limit or RAM). Units: B."""
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
