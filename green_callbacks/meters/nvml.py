"""NVIDIA GPU energy through NVML (the ``nvidia-ml-py`` package, module ``pynvml``).

Per visible GPU it uses the total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver loaded,
Volta and newer). A GPU without that counter is not reported as 0 J: its power
(``nvmlDeviceGetPowerUsage``, milliwatts) is integrated between reads with the
trapezoid rule, which is why ``max_poll_interval_s`` asks the tracker's sampler
thread to read it often.

Domains are ``gpu:0``, ``gpu:1``, ... numbered as CUDA numbers them in this
process, so ``gpu:0`` is ``cuda:0`` also under ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from green_callbacks.errors import MeterReadError, MeterUnavailableError
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock, Domain, Reading

MJ_PER_J = 1000.0
MW_PER_W = 1000.0
# Power-only GPUs are integrated between reads; 0.1 s keeps the trapezoid error
# small for training loads whose power changes on the scale of seconds.
POWER_POLL_INTERVAL_S = 0.1


def _pynvml() -> ModuleType:
    # Imported here, not at module level: tests patch sys.modules["pynvml"].
    import pynvml

    module: ModuleType = pynvml
    return module


def visible_physical_indices(env_value: str | None, uuids: list[str]) -> list[int]:
    """Physical NVML indices of the GPUs CUDA shows this process, in CUDA order.

    Args:
        env_value: ``CUDA_VISIBLE_DEVICES``, or None when unset (all GPUs).
        uuids: NVML UUID of each physical GPU, by NVML index.

    Follows CUDA's rules: entries are indices or (prefixes of) ``GPU-`` UUIDs,
    and the list stops at the first entry that names no GPU.
    """
    if env_value is None:
        return list(range(len(uuids)))
    result: list[int] = []
    for entry in (e.strip() for e in env_value.split(",")):
        index = _resolve_entry(entry, uuids)
        if index is None or index in result:
            break
        result.append(index)
    return result


def _resolve_entry(entry: str, uuids: list[str]) -> int | None:
    if entry.isdigit():
        index = int(entry)
        return index if index < len(uuids) else None
    if entry.startswith("GPU-"):
        matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
        return matches[0] if len(matches) == 1 else None
    return None  # MIG instances and malformed entries: CUDA stops here too


@dataclass
class _Gpu:
    domain: Domain
    handle: Any
    has_counter: bool
    origin_mj: int = 0
    last_power_w: float = 0.0
    last_t: float = 0.0
    integrated_j: float = 0.0
    busy_sum: float = 0.0  # NVML's utilisation rate at each read, summed (fraction)
    busy_reads: int = 0
    busy_supported: bool = True


class NvmlMeter:
    """Cumulative energy of each GPU visible to this process.

    Args:
        clock: monotonic clock for timestamps and power integration.

    Raises:
        MeterUnavailableError: NVML cannot start (no driver) or no GPU is visible.
    """

    name = "nvml"

    def __init__(self, *, clock: Clock = DEFAULT_CLOCK):
        self._clock = clock
        nvml = _pynvml()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as err:
            raise MeterUnavailableError(
                f"NVML could not start ({err}): no NVIDIA driver on this machine, or "
                "libnvidia-ml.so is not on the library path."
            ) from err
        self._open = True
        try:
            self._gpus = self._open_gpus(nvml)
        except BaseException:
            self.close()
            raise
        self.max_poll_interval_s: float | None = (
            None if all(g.has_counter for g in self._gpus) else POWER_POLL_INTERVAL_S
        )

    def _open_gpus(self, nvml: ModuleType) -> list[_Gpu]:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
        visible = visible_physical_indices(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
        if not visible:
            raise MeterUnavailableError(
                f"NVML sees {count} GPU(s) but none is visible to this process "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})."
            )
        now = self._clock()
        gpus = []
        for cuda_index, physical in enumerate(visible):
            handle = handles[physical]
            gpus.append(self._open_gpu(nvml, handle, cuda_index, physical, now, uuids[physical]))
        return gpus

    def _open_gpu(
        self, nvml: ModuleType, handle: Any, cuda_index: int, physical: int, now: float, uuid: str
    ) -> _Gpu:
        model = _text(nvml.nvmlDeviceGetName(handle))
        try:
            origin = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            has_counter, method = True, "energy-counter"
        except nvml.NVMLError as err:
            if getattr(err, "value", None) != nvml.NVML_ERROR_NOT_SUPPORTED:
                raise MeterUnavailableError(f"NVML failed on GPU {physical}: {err}") from err
            origin, has_counter, method = 0, False, "power-integration"
        domain = Domain(
            name=f"gpu:{cuda_index}",
            kind="measured",
            source="nvml",
            method=method,
            detail=f"{model} (NVML index {physical}, {uuid})",  # the UUID: one GPU, anywhere
        )
        gpu = _Gpu(domain, handle, has_counter, origin_mj=origin, last_t=now)
        if not has_counter:
            gpu.last_power_w = nvml.nvmlDeviceGetPowerUsage(handle) / MW_PER_W
        return gpu

    def domains(self) -> tuple[Domain, ...]:
        return tuple(g.domain for g in self._gpus)

    def read(self) -> Reading:
        nvml = _pynvml()
        now = self._clock()
        energy: dict[str, float] = {}
        try:
            for gpu in self._gpus:
                energy[gpu.domain.name] = self._read_gpu(nvml, gpu, now)
        except nvml.NVMLError as err:
            raise MeterReadError(f"NVML read failed: {err}") from err
        for gpu in self._gpus:
            self._read_busy(nvml, gpu)
        return Reading(now, energy)

    @staticmethod
    def _read_busy(nvml: ModuleType, gpu: _Gpu) -> None:
        """Add the GPU's utilisation rate now (the share of NVML's last sample period,
        1/6 s to 1 s, with a kernel running) to its running sum; unsupported: stop asking."""
        if not gpu.busy_supported:
            return
        try:
            gpu.busy_sum += float(nvml.nvmlDeviceGetUtilizationRates(gpu.handle).gpu) / 100.0
            gpu.busy_reads += 1
        except (nvml.NVMLError, AttributeError, TypeError, ValueError):
            gpu.busy_supported = False

    def utilization_totals(self) -> dict[str, tuple[float, int]]:
        """Per GPU domain, the utilisation rates read so far: (their sum, how many).

        The mean between two calls is the GPU's utilisation over that span, at the
        sampler's rate (every read of this meter).
        """
        return {g.domain.name: (g.busy_sum, g.busy_reads) for g in self._gpus if g.busy_reads}

    @staticmethod
    def _read_gpu(nvml: ModuleType, gpu: _Gpu, now: float) -> float:
        if gpu.has_counter:
            return (
                int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)) - gpu.origin_mj
            ) / MJ_PER_J
        power_w = nvml.nvmlDeviceGetPowerUsage(gpu.handle) / MW_PER_W
        gpu.integrated_j += 0.5 * (power_w + gpu.last_power_w) * (now - gpu.last_t)
        gpu.last_power_w, gpu.last_t = power_w, now
        return gpu.integrated_j

    def close(self) -> None:
        if self._open:
            self._open = False
            nvml = _pynvml()
            with contextlib.suppress(nvml.NVMLError):  # the driver may already be gone
                nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
