"""Out-of-memory errors and memory leaks: recognise them, plan a recovery, see a trend coming.

Pure logic: the exception types are looked up in modules already imported,
never imported here.

Example:
    >>> plan_after_oom(64, OOMPlanConfig(factor=0.5, min_batch_size=16)).batch_size
    32
    >>> watch = LeakWatch(window=4, min_growth_bytes=1e6)
    >>> for used in (1e9, 1.2e9, 1.4e9, 1.6e9):
    ...     trend = watch.observe(used, limit_bytes=2.6e9)
    >>> trend.leaking, trend.growth_bytes_per_epoch, trend.epochs_left
    (True, 200000000.0, 5.0)
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

from green_callbacks.errors import OOMFloorError, PolicyConfigError, require_number

# (module, attribute) of real out-of-memory exception types, checked only if imported.
_OOM_TYPES = (
    ("torch", "OutOfMemoryError"),
    ("tensorflow", "errors.ResourceExhaustedError"),
)
_OOM_TEXT = ("out of memory", "resource_exhausted", "resourceexhausted", "oom when allocating")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/CPU allocator and TensorFlow out-of-memory errors.

    Args:
        error: the exception training raised.

    Checks the real exception types first (``torch.OutOfMemoryError``,
    ``tf.errors.ResourceExhaustedError``, ``MemoryError``); matches the
    message only for errors raised as a plain ``RuntimeError``. An
    :class:`OOMFloorError` (a guard gave up) is not retried again.
    """
    if isinstance(error, OOMFloorError):
        return False
    if isinstance(error, MemoryError):
        return True
    for module_name, path in _OOM_TYPES:
        kind: object = sys.modules.get(module_name)
        for part in path.split("."):
            kind = getattr(kind, part, None)
        if isinstance(kind, type) and isinstance(error, kind):
            return True
    if type(error) is RuntimeError:
        text = str(error).lower()
        return any(fragment in text for fragment in _OOM_TEXT)
    return False


@dataclass(frozen=True)
class OOMPlanConfig:
    """How to shrink the batch after an out-of-memory error.

    Attributes:
        factor: the new batch size is the old one times this (0 < factor < 1).
        min_batch_size: the floor; an OOM at the floor is not retried.
    """

    factor: float = 0.5
    min_batch_size: int = 1

    def __post_init__(self) -> None:
        require_number("factor", self.factor, PolicyConfigError)
        require_number("min_batch_size", self.min_batch_size, PolicyConfigError, integer=True)
        if not 0 < self.factor < 1:
            raise PolicyConfigError(f"factor must be between 0 and 1, got {self.factor}")
        if self.min_batch_size < 1:
            raise PolicyConfigError(f"min_batch_size must be >= 1, got {self.min_batch_size}")


@dataclass(frozen=True)
class OOMPlan:
    """Retry with ``batch_size``, or give up (``retry`` False) with the reason in ``message``.

    Attributes:
        retry: whether training should run again.
        batch_size: the batch size to run again with. Units: samples.
        message: one sentence for people and logs.
    """

    retry: bool
    batch_size: int
    message: str


def plan_after_oom(batch_size: int, config: OOMPlanConfig) -> OOMPlan:
    """The batch size to retry with after an OOM at ``batch_size``.

    Args:
        batch_size: the batch size that ran out of memory. Units: samples.
        config: how much to shrink it, and the floor.
    """
    smaller = max(int(batch_size * config.factor), config.min_batch_size)
    if smaller >= batch_size:
        return OOMPlan(
            False,
            batch_size,
            f"out of memory at batch size {batch_size}, which is already the floor "
            f"(min_batch_size={config.min_batch_size}); use a smaller model, mixed precision "
            "or gradient accumulation, or free memory held elsewhere",
        )
    return OOMPlan(
        True, smaller, f"out of memory at batch size {batch_size}; retrying at {smaller}"
    )


@dataclass(frozen=True)
class MemoryTrend:
    """The memory trend after the latest epoch.

    Attributes:
        leaking: memory grew in every epoch of the window by more than the threshold on average.
        growth_bytes_per_epoch: least-squares slope over the window. Units: bytes/epoch.
        epochs_left: epochs until ``limit_bytes`` at that slope, if a limit is known.
        message: a sentence for the user when leaking, else "".
    """

    leaking: bool
    growth_bytes_per_epoch: float
    epochs_left: float | None
    message: str = ""


class LeakWatch:
    """Watches memory in use once per epoch and flags a steady climb.

    Args:
        window: epochs the trend is fitted over.
        min_growth_bytes: average growth per epoch below which nothing is flagged. Units: bytes.
    """

    def __init__(self, window: int = 5, min_growth_bytes: float = 64 * 2**20):
        require_number("window", window, PolicyConfigError, integer=True)
        if window < 3:
            raise PolicyConfigError(f"window must be >= 3 epochs to see a trend, got {window!r}")
        if not min_growth_bytes >= 0:
            raise PolicyConfigError(
                f"the leak threshold must be >= 0 bytes (min_leak_mib >= 0), got {min_growth_bytes}"
            )
        self.min_growth_bytes = min_growth_bytes
        self._used: deque[float] = deque(maxlen=window)

    def observe(self, used_bytes: float, limit_bytes: float | None = None) -> MemoryTrend:
        """Record this epoch's memory in use (and the limit, if known) and judge the trend."""
        self._used.append(used_bytes)
        used = list(self._used)
        if len(used) < (self._used.maxlen or 0):
            return MemoryTrend(False, 0.0, None)
        slope = statistics.linear_regression(range(len(used)), used).slope
        rising = all(b > a for a, b in pairwise(used))
        epochs_left = None
        if limit_bytes is not None and slope > 0:
            epochs_left = max(limit_bytes - used[-1], 0.0) / slope
        if not (rising and slope >= self.min_growth_bytes):
            return MemoryTrend(False, slope, epochs_left)
        left = "" if epochs_left is None else f"; about {math.floor(epochs_left)} epochs left"
        message = (
            f"memory grew in each of the last {len(used)} epochs, by {slope / 2**20:.1f} MiB "
            f"per epoch on average ({used[-1] / 2**20:.0f} MiB now){left} before it runs out; "
            "look for tensors kept across steps (losses appended without .item(), caches)"
        )
        return MemoryTrend(True, slope, epochs_left, message)


@dataclass(frozen=True)
class OOMEvent:
    """One out-of-memory error an ``OOMGuard`` handled.

    Attributes:
        epoch: the epoch it happened in (0-based), or -1 in the pre-flight pass.
        step: optimizer steps done before it.
        batch_size: the batch size that ran out of memory.
        new_batch_size: the batch size training went on with (None at the floor).
        checkpoint: the emergency checkpoint written, if any.
        message: what happened, for the user.
    """

    epoch: int
    step: int
    batch_size: int
    new_batch_size: int | None
    checkpoint: str | None
    message: str
