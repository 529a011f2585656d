"""NVML paths through a fake pynvml module (autospec of the real one: real names, real arity)."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any
from unittest import mock

import pynvml
import pytest

from green_callbacks.core import EnergyTracker
from green_callbacks.errors import EnergySourceWarning, MeterUnavailableError
from green_callbacks.meters import NvmlMeter, detect
from green_callbacks.meters.nvml import visible_physical_indices
from green_callbacks.testing import FakeClock

UUIDS = ["GPU-aaaa1111-0000", "GPU-bbbb2222-0000"]


def fake_pynvml(
    *, counter: bool = True, energy_mj: list[int] | None = None, power_mw: int = 0
) -> Any:
    """A fake pynvml: autospec of the real module with two GPUs scripted."""
    fake = mock.create_autospec(pynvml, instance=False)
    fake.NVMLError = pynvml.NVMLError
    fake.NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    fake.nvmlDeviceGetCount.return_value = len(UUIDS)
    fake.nvmlDeviceGetHandleByIndex.side_effect = lambda i: f"handle-{i}"
    fake.nvmlDeviceGetUUID.side_effect = lambda h: UUIDS[int(h[-1])]
    fake.nvmlDeviceGetName.return_value = "Fake H100"
    fake.energy_mj = energy_mj if energy_mj is not None else [0, 0]
    if counter:
        fake.nvmlDeviceGetTotalEnergyConsumption.side_effect = lambda h: fake.energy_mj[int(h[-1])]
    else:
        fake.nvmlDeviceGetTotalEnergyConsumption.side_effect = pynvml.NVMLError(
            pynvml.NVML_ERROR_NOT_SUPPORTED
        )
    fake.nvmlDeviceGetPowerUsage.return_value = power_mw
    return fake


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def _install(fake: ModuleType) -> ModuleType:
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    return _install


def test_energy_counter_gives_joules_since_open(install: Any) -> None:
    fake = install(fake_pynvml(energy_mj=[5_000, 7_000]))
    meter = NvmlMeter()
    fake.energy_mj = [17_500, 7_250]

    reading = meter.read()

    assert reading.energy_j == {"gpu:0": 12.5, "gpu:1": 0.25}
    assert {d.method for d in meter.domains()} == {"energy-counter"}
    assert meter.max_poll_interval_s is None


def test_gpu_without_counter_integrates_power_instead_of_reporting_zero(install: Any) -> None:
    fake = install(fake_pynvml(counter=False, power_mw=100_000))
    clock = FakeClock()
    meter = NvmlMeter(clock=clock)
    clock.advance(1.0)
    fake.nvmlDeviceGetPowerUsage.return_value = 300_000
    first = meter.read().energy_j["gpu:0"]  # trapezoid of 100 W -> 300 W over 1 s
    clock.advance(2.0)
    second = meter.read().energy_j["gpu:0"]  # + 300 W for 2 s

    assert first == pytest.approx(200.0)
    assert second == pytest.approx(800.0)
    assert meter.domains()[0].method == "power-integration"
    assert meter.domains()[0].kind == "measured"
    assert meter.max_poll_interval_s is not None


def test_nvml_error_mid_run_drops_the_source_with_one_warning(install: Any) -> None:
    fake = install(fake_pynvml(energy_mj=[0, 0]))
    clock = FakeClock()
    tracker = EnergyTracker(["nvml"], sample_interval_s=None, clock=clock).start()
    clock.advance(1.0)
    fake.energy_mj = [100_000, 50_000]
    epoch1 = tracker.close(tracker.open("epoch"))  # fine so far
    tracker.poll()
    fake.nvmlDeviceGetTotalEnergyConsumption.side_effect = pynvml.NVMLError(
        pynvml.NVML_ERROR_GPU_IS_LOST
    )

    with pytest.warns(EnergySourceWarning, match="nvml.*dropped") as caught:
        epoch2_window = tracker.open("epoch")
        clock.advance(1.0)
        epoch2 = tracker.close(epoch2_window)
        totals = tracker.stop()

    assert len(caught) == 1
    assert epoch1.notes == ()
    # after the drop: the mean measured power (100 W + 50 W) held, labelled as an estimate
    assert epoch2.energy_j == 150.0 and "GPU is lost" in epoch2.notes[0]
    assert epoch2.duration_s == 1.0  # time goes on after the source is dropped
    assert {d.kind for d in epoch2.layout.domains} == {"estimated"}
    assert totals.energy_j == 300.0 and totals.kind == "estimated"
    assert totals.notes == epoch2.notes


def test_nvml_without_driver_is_unavailable(install: Any) -> None:
    fake = install(fake_pynvml())
    fake.nvmlInit.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    with pytest.raises(MeterUnavailableError, match="no NVIDIA driver"):
        NvmlMeter()


def test_auto_chooses_nvml_and_estimates_the_host(install: Any, tmp_path: Any) -> None:
    install(fake_pynvml())

    with pytest.warns(EnergySourceWarning):
        selection = detect(powercap_root=tmp_path / "none")

    kinds = {d.name: d.kind for m in selection.meters for d in m.domains()}
    assert kinds == {
        "gpu:0": "measured",
        "gpu:1": "measured",
        "cpu": "estimated",
        "dram": "estimated",
    }


def test_cuda_visible_devices_renumbers_gpus(install: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(fake_pynvml(energy_mj=[0, 0]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    meter = NvmlMeter()
    fake.energy_mj = [9_000, 2_000]

    assert meter.read().energy_j == {"gpu:0": 2.0}  # cuda:0 is physical GPU 1
    assert "NVML index 1, GPU-bbbb2222-0000" in meter.domains()[0].detail


def test_no_visible_gpu_is_unavailable(install: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(fake_pynvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")

    with pytest.raises(MeterUnavailableError, match="none is visible"):
        NvmlMeter()
    fake.nvmlShutdown.assert_called_once()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, [0, 1]),
        ("1,0", [1, 0]),
        ("GPU-bbbb", [1]),
        ("0,7,1", [0]),  # CUDA stops at the first entry that names no GPU
        ("0,0", [0]),
        ("MIG-xyz", []),
        ("", []),
    ],
)
def test_visible_physical_indices_follow_cuda_rules(env: str | None, expected: list[int]) -> None:
    assert visible_physical_indices(env, UUIDS) == expected


def test_gpu_utilisation_is_averaged_over_the_training_epoch(install: Any, tmp_path: Any) -> None:
    import json
    from types import SimpleNamespace

    from green_callbacks.core.session import CallbackConfig, EnergySession

    fake = install(fake_pynvml(energy_mj=[0, 0]))
    rates = {"handle-0": 0, "handle-1": 0}
    fake.nvmlDeviceGetUtilizationRates.side_effect = lambda h: SimpleNamespace(gpu=rates[h])
    clock = FakeClock()
    config = CallbackConfig(meters=[NvmlMeter(clock=clock)], run_dir=tmp_path, granularity="epoch")
    session = EnergySession(config, clock=clock, sample_interval_s=None).start()
    rates.update({"handle-0": 10, "handle-1": 90})  # before the epoch: not counted
    session.tracker.poll()
    rates.update({"handle-0": 40, "handle-1": 5})  # every read during the epoch
    session.epoch_start("train")
    for _ in range(3):
        clock.advance(1.0)
        session.tracker.poll()
    session.epoch_end("train")
    session.record_epoch(0)
    rates.update({"handle-0": 100, "handle-1": 100})  # after it: not counted either
    session.tracker.poll()
    session.stop()
    row = json.loads((tmp_path / "version_0" / "history.jsonl").read_text())
    assert row["utilization/gpu:0"] == pytest.approx(0.40)
    assert row["utilization/gpu:1"] == pytest.approx(0.05)


def test_a_gpu_without_utilisation_rates_is_left_out(install: Any) -> None:
    fake = install(fake_pynvml())
    fake.nvmlDeviceGetUtilizationRates.side_effect = pynvml.NVMLError(
        pynvml.NVML_ERROR_NOT_SUPPORTED
    )
    meter = NvmlMeter()
    meter.read()
    meter.read()
    assert meter.utilization_totals() == {}
    assert fake.nvmlDeviceGetUtilizationRates.call_count == 2  # asked once per GPU, then never
