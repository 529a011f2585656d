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

import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from green_callbacks.errors import DistributedWarning, warn
from green_callbacks.meters.auto import Finding, Selection
from green_callbacks.meters.base import Domain, Meter, Reading

CLAIM_SLOTS = 32
"""Domains per process compared with the other processes' (more are not compared)."""


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


def restrict(
    selection: Selection,
    share: RankShare,
    reduce_sum: Callable[[list[float]], list[float]] | None = None,
    host: str | None = None,
) -> Selection:
    """The meters of ``selection`` cut down to ``share``; meters left with no domain are closed.

    With ``reduce_sum`` (the job's element-wise sum over processes, called by
    every process at the same point) the processes also compare what they
    kept: a domain two processes would both meter (the same name and the same
    detail on one machine, ``host`` or :func:`machine`: two processes that each
    think they are its local rank 0, two workers of a ``tf.distribute`` job on
    one host) is kept by the lowest rank only, with a
    :class:`~green_callbacks.errors.DistributedWarning` naming it.
    """
    kept = _cut(selection, share.keeps, f"{share.describe()}; {{}} metered by another rank")
    if reduce_sum is None:
        return kept
    domains = [d for meter in kept.meters for d in meter.domains()]
    twice = shared_claims(domains, share, reduce_sum, host or machine())
    ours = {name for name, ranks in twice.items() if min(ranks) == share.rank}
    groups: dict[tuple[int, ...], list[str]] = {}
    for name, ranks in sorted(twice.items()):
        groups.setdefault(tuple(ranks), []).append(name)
    where = host or socket.gethostname()
    for group, names in groups.items():
        keeper = "this process" if group[0] == share.rank else f"rank {group[0]}"
        warn(
            f"ranks {', '.join(map(str, group))} all meter {', '.join(names)} on {where}, which "
            f"would count each {len(group)} times; {keeper} keeps them, so each is counted "
            "once. Each process should know its rank on its host (LOCAL_RANK), and a "
            "tf.distribute job should run one worker per host",
            DistributedWarning,
        )
    return _cut(
        kept, lambda d: d.name not in twice or d.name in ours, "{} metered by a lower rank too"
    )


def _cut(selection: Selection, keeps: Callable[[Domain], bool], why: str) -> Selection:
    """``selection`` with only the domains ``keeps`` accepts; emptied meters closed."""
    result = Selection(findings=list(selection.findings))
    for meter in selection.meters:
        keep = tuple(d for d in meter.domains() if keeps(d))
        if len(keep) == len(meter.domains()):
            result.meters.append(meter)
            continue
        left = ", ".join(d.name for d in meter.domains() if not keeps(d))
        result.findings.append(Finding(meter.name, bool(keep), why.format(left)))
        if keep:
            result.meters.append(DomainSubset(meter, keep))
        else:
            meter.close()
    return result


def machine() -> str:
    """What tells this machine from others: the kernel's boot id where Linux gives one (the
    same in every container on the machine, which share its counters), else the host name."""
    try:
        return "boot:" + Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "host:" + socket.gethostname()


def claim(domain: Domain, host: str) -> str:
    """What metering ``domain`` on the machine ``host`` counts: the same string in two
    processes is a double count. The detail tells devices apart that two processes both
    call ``gpu:0`` (each given its own GPU: their NVML UUIDs differ), and a replayed domain
    by its trace."""
    return f"{host}/{domain.name}/{domain.detail}"


def _code(text: str) -> float:
    """A 24-bit code of ``text``, above 0: exact even if a collective sums in float32."""
    digest = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=3).digest(), "big")
    return float(digest or 1)


def shared_claims(
    domains: list[Domain],
    share: RankShare,
    reduce_sum: Callable[[list[float]], list[float]],
    host: str,
) -> dict[str, list[int]]:
    """The domains this process meters that other processes meter too: name -> the ranks.

    Each process writes the codes of its claims into its own slots of a
    vector of zeros, and the job's sum gives every process everyone's claims.
    """
    codes = {_code(claim(d, host)): d.name for d in domains[:CLAIM_SLOTS]}
    vector = [0.0] * (share.world_size * CLAIM_SLOTS)
    for slot, code in enumerate(codes):
        vector[share.rank * CLAIM_SLOTS + slot] = code
    everyone = reduce_sum(vector)
    ranks: dict[str, list[int]] = {}
    for rank in range(share.world_size):
        for code in everyone[rank * CLAIM_SLOTS : (rank + 1) * CLAIM_SLOTS]:
            if code in codes:
                ranks.setdefault(codes[code], []).append(rank)
    return {name: found for name, found in ranks.items() if len(found) > 1}
