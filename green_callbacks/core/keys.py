"""Metric keys: stable public API, the same in every framework (see docs/metrics.md).

Phases are ``train``, ``val``, ``test`` and ``predict``.
"""

from __future__ import annotations

TOTAL_J = "energy/total_j"
"""Energy of the whole run so far, continued across resume. Units: J."""

CARBON_TOTAL_G = "carbon/total_g"
"""Emissions of the whole run so far, when an intensity is set. Units: gCO2e."""

STOP_SAVED_ESTIMATE_J = "energy/early_stop_saved_estimate_j"
"""Energy an early stop saved against running every planned epoch: an estimate. Units: J."""

CHECKPOINT_J = "energy/checkpoint_j"
"""Measured energy of the latest energy-planned checkpoint save. Units: J."""

CHECKPOINT_OVERHEAD = "energy/checkpoint_overhead"
"""Energy of all checkpoint saves so far over the run's total energy. Units: fraction."""


def epoch_j(phase: str) -> str:
    """Energy of one epoch of ``phase`` (train excludes validation run inside it). Units: J."""
    return f"energy/{phase}_epoch_j"


def avg_power_w(phase: str) -> str:
    """Average power over the epoch or loop of ``phase``. Units: W."""
    return f"power/{phase}_avg_w"


def j_per_sample(phase: str) -> str:
    """Energy per sample over the epoch or loop of ``phase``. Units: J/sample."""
    return f"energy/{phase}_j_per_sample"


def step_j(phase: str) -> str:
    """Energy of one logged step (granularity "batch", the default; interpolated). Units: J."""
    return f"energy/{phase}_step_j"


def held_j(phase: str) -> str:
    """Of the epoch's or loop's energy, the joules no sensor measured: a failed source's
    domains held at the mean power it measured (an estimate). Logged only once a source has
    failed. Units: J."""
    return f"energy/{phase}_held_j"


def loop_j(phase: str) -> str:
    """Energy of a whole test or predict loop. Units: J."""
    return f"energy/{phase}_j"


BAR_TOTAL_J = "energy_j"
"""Energy of the run so far, on the progress bar only (not sent to loggers; interpolated;
in a multi-process job, this process's share). Units: J."""

BAR_POWER_W = "power_w"
"""Average power of the epoch so far, on the progress bar only (like :data:`BAR_TOTAL_J`).
Units: W."""

DATA_WAIT_FRACTION = "time/data_wait_fraction"
"""Share of the training epoch spent between batches: from the end of one step to the
start of the next, waiting for the data loader (and callbacks). Logged per training epoch
by adapters that see batch starts. Units: fraction."""

CPU_UTILIZATION = "cpu/process_utilization"
"""Share of the machine's logical CPUs the training process kept busy over the epoch (its
user and system CPU time over wall time x CPUs), in the run folder's history. Units: fraction."""


def utilization(domain: str) -> str:
    """Mean utilisation of a device over the training epoch (``gpu:0``: NVML's rate, read at
    every sample), in the run folder's history. Units: fraction."""
    return f"utilization/{domain}"


OOM_BATCH_SIZE = "oom/batch_size"
"""The batch size an ``OOMGuard`` continued with after an out-of-memory error. Units: samples."""

OOM_RECOVERIES = "oom/recoveries"
"""Out-of-memory errors survived so far in this run (pre-flight included). Units: count."""

HOST_RSS_MIB = "memory/host_rss_mib"
"""This process's resident memory at the end of the epoch (``OOMGuard``). Units: MiB."""

DEVICE_ALLOCATED_MIB = "memory/device_allocated_mib"
"""Accelerator memory allocated by the framework at the end of the epoch. Units: MiB."""
