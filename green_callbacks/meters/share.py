"""One process's share of the machine in a distributed job, so nothing is metered twice.

Several processes on one host see the same host-level counters (RAPL package
and DRAM, the CPU estimate) and often every GPU. Each process keeps only its
share: its own device's domains, and the host-level domains on local rank 0.
Summed across processes, the shares cover each domain exactly once.

Example:
    >>> from green_callbacks.testing import FakeMeter
    >>> meter = FakeMeter({"cpu:0": 50.0, "gpu:0": 100.0, "gpu:1": 100.0})
    >>> rank1 = RankShare(rank=1, local_rank=1, world_size=2)
    >>> [d.name for d in restrict(Selection([meter]), rank1).meters[0].domains()]
    ['gpu:1']
"""

from __future__ import annotations

from dataclasses import dataclass

from green_callbacks.meters.auto import Finding, Selection
from green_callbacks.meters.base import Domain, Meter, Reading


@dataclass(frozen=True)
class RankShare:
    """Where one process sits in a distributed job.

    Attributes:
        rank: global rank.
        local_rank: rank among the processes on this host.
        world_size: processes in the job.
        device_index: the accelerator this process drives (the ``N`` of
            ``gpu:N``), or None to take the local rank.
        all_devices: this process drives every accelerator of its host (a
            ``tf.distribute`` multi-worker job: one worker per host).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device_index: int | None = None
    all_devices: bool = False

    def keeps(self, domain: Domain) -> bool:
        """Whether this process meters ``domain``."""
        index = domain.device_index
        if index is None:
            return self.local_rank == 0
        if self.all_devices:
            return True
        return index == (self.local_rank if self.device_index is None else self.device_index)

    def describe(self) -> str:
        if self.all_devices:
            return (f"worker {self.rank} of {self.world_size} meters its host: every device and "
                    "the host-level domains")  # fmt: skip
        device = self.local_rank if self.device_index is None else self.device_index
        return (
            f"rank {self.rank} of {self.world_size} (local rank {self.local_rank}) meters "
            f"device {device}" + (" and the host-level domains" if self.local_rank == 0 else "")
        )


class DomainSubset:
    """A meter restricted to some of its domains (reads pass through, others are dropped)."""

    def __init__(self, meter: Meter, keep: tuple[Domain, ...]):
        self.inner = meter
        self.name = meter.name
        self.max_poll_interval_s = meter.max_poll_interval_s
        self._domains = keep
        self._names = tuple(d.name for d in keep)

    def domains(self) -> tuple[Domain, ...]:
        return self._domains

    def read(self) -> Reading:
        reading = self.inner.read()
        return Reading(reading.timestamp_s, {n: reading.energy_j[n] for n in self._names})

    def close(self) -> None:
        self.inner.close()


def restrict(selection: Selection, share: RankShare) -> Selection:
    """The meters of ``selection`` cut down to ``share``; meters left with no domain are closed."""
    result = Selection(findings=list(selection.findings))
    for meter in selection.meters:
        keep = tuple(d for d in meter.domains() if share.keeps(d))
        if len(keep) == len(meter.domains()):
            result.meters.append(meter)
            continue
        left = ", ".join(d.name for d in meter.domains() if not share.keeps(d))
        result.findings.append(
            Finding(meter.name, bool(keep), f"{share.describe()}; {left} metered by another rank")
        )
        if keep:
            result.meters.append(DomainSubset(meter, keep))
        else:
            meter.close()
    return result
