"""The control flow of every framework's ``OOMGuard``, without the framework.

:class:`OOMDriver` owns what the Lightning and Keras guards share: shrinking
the batch until a pass fits (the pre-flight), running training again after an
out-of-memory error with a smaller batch, the emergency save through the one
atomic writer, and the per-epoch memory figures with the leak watch. The
adapters supply how to run one pass, how to set a batch size and how to write.

Example:
    >>> driver = OOMDriver(OOMPlanConfig(factor=0.5, min_batch_size=8))
    >>> def one_pass(batch_size):
    ...     if batch_size > 16:
    ...         raise MemoryError(f"batch {batch_size} does not fit")
    ...     return "fits"
    >>> driver.shrink_until_fits(64, one_pass, free=lambda: None)
    (16, 'fits')
    >>> [(e.batch_size, e.new_batch_size) for e in driver.events]
    [(64, 32), (32, 16)]
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from green_callbacks.core import keys
from green_callbacks.core.atomic import atomic_write
from green_callbacks.core.memory import MIB, DeviceMemory, host_memory
from green_callbacks.errors import (
    MemoryLeakWarning,
    OOMFloorError,
    PolicyConfigError,
    require_number,
)
from green_callbacks.policies.memory import (
    LeakWatch,
    MemoryTrend,
    OOMEvent,
    OOMPlan,
    OOMPlanConfig,
    is_out_of_memory,
    plan_after_oom,
)

log = logging.getLogger("green_callbacks.oom_guard")
T = TypeVar("T")


class OOMDriver:
    """What every framework's ``OOMGuard`` decides and does, given framework callables.

    Args:
        plan: how to shrink the batch after an OOM.
        leak_window: epochs the memory trend is fitted over (>= 3).
        min_leak_mib: average growth per epoch below which no leak is flagged. Units: MiB.
    """

    def __init__(self, plan: OOMPlanConfig, leak_window: int = 5, min_leak_mib: float = 64.0):
        require_number("min_leak_mib", min_leak_mib, PolicyConfigError)
        if not min_leak_mib >= 0:
            raise PolicyConfigError(
                f"min_leak_mib must be >= 0 MiB of growth per epoch, got {min_leak_mib}"
            )
        self.plan = plan
        self.events: list[OOMEvent] = []
        self._watches = {
            where: LeakWatch(leak_window, min_leak_mib * MIB) for where in ("host", "device")
        }

    # -- decisions -------------------------------------------------------

    def out_of_memory(
        self, batch_size: int, *, epoch: int, step: int, checkpoint: str | None = None
    ) -> OOMPlan:
        """Record an OOM at ``batch_size`` and return the plan; raise nothing."""
        plan = plan_after_oom(batch_size, self.plan)
        where = "in the pre-flight pass" if epoch < 0 else f"in epoch {epoch} after step {step}"
        saved = f"; emergency checkpoint {checkpoint}" if checkpoint else ""
        message = f"{plan.message} ({where}{saved})"
        self.events.append(
            OOMEvent(epoch, step, batch_size, plan.batch_size if plan.retry else None,
                     checkpoint, message)
        )  # fmt: skip
        return plan

    def floor_error(self) -> OOMFloorError:
        """The error to raise after an OOM the plan cannot retry."""
        return OOMFloorError(self.events[-1].message)

    def next_batch_size(
        self, batch_size: int, error: BaseException, *, epoch: int, step: int,
        checkpoint: str | None = None,
    ) -> int:  # fmt: skip
        """After an OOM during training: the size to go on with, or the floor error (chained)."""
        plan = self.out_of_memory(batch_size, epoch=epoch, step=step, checkpoint=checkpoint)
        if not plan.retry:
            raise self.floor_error() from error
        log.warning("OOMGuard: %s; the interrupted epoch runs again at the new size",
                    self.events[-1].message)  # fmt: skip
        return plan.batch_size

    # -- control flow ----------------------------------------------------

    def shrink_until_fits(
        self,
        batch_size: int,
        attempt: Callable[[int], T],
        *,
        free: Callable[[], object],
        apply: Callable[[int], object] = lambda size: None,
    ) -> tuple[int, T]:
        """Run ``attempt(batch_size)``, shrinking on each OOM; the size that fit, and its result.

        Args:
            batch_size: the size to try first.
            attempt: one pass at a size (a pre-flight step); errors other than
                out-of-memory pass through untouched.
            free: release what the failed pass held (gradients, caches).
            apply: set the new size where training reads it.
        """
        while True:
            try:
                return batch_size, attempt(batch_size)
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
            free()
            gc.collect()
            plan = self.out_of_memory(batch_size, epoch=-1, step=0)
            if not plan.retry:
                raise self.floor_error()
            log.warning("OOMGuard: %s", self.events[-1].message)
            batch_size = plan.batch_size
            apply(batch_size)

    def run(self, train: Callable[[], T], recover: Callable[[BaseException], object]) -> T:
        """Run ``train`` until it ends without an OOM, calling ``recover(error)`` after each.

        ``recover`` runs outside the ``except`` block, so the failed step's
        traceback (and the tensors its frames hold) is freed first.
        """
        while True:
            try:
                return train()
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                error = err
            gc.collect()
            recover(error)

    def emergency_save(self, path: Path, write: Callable[[Path], object]) -> str | None:
        """Write an emergency checkpoint atomically; a failed write is logged, not raised."""
        try:
            atomic_write(path, write)
        except Exception as err:  # the recovery goes on without it
            log.warning("OOMGuard: could not write the emergency checkpoint %s: %s", path, err)
            return None
        return str(path)

    # -- memory ----------------------------------------------------------

    def memory(self, where: str, used_bytes: float, limit_bytes: float | None) -> MemoryTrend:
        """This epoch's memory in use on ``host`` or ``device``; warns when it looks like a leak."""
        trend = self._watches[where].observe(used_bytes, limit_bytes)
        if trend.leaking:
            warnings.warn(f"green_callbacks: {where} {trend.message}", MemoryLeakWarning,
                          stacklevel=3)  # fmt: skip
        return trend

    def epoch_figures(self, device: DeviceMemory | None) -> dict[str, float]:
        """The memory figures an epoch logs (host, and ``device`` when there is one)."""
        used, limit = host_memory()
        figures = {keys.HOST_RSS_MIB: used / MIB}
        self.memory("host", used, limit)
        if device is not None:
            figures[keys.DEVICE_ALLOCATED_MIB] = device[0] / MIB
            self.memory("device", *device)
        return figures
