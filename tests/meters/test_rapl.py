from __future__ import annotations

from pathlib import Path

import pytest

from green_callbacks.core import EnergyTracker
from green_callbacks.errors import EnergySourceWarning, MeterPermissionError, MeterUnavailableError
from green_callbacks.meters import RaplMeter, detect
from green_callbacks.meters.rapl import PERMISSION_FIX
from green_callbacks.testing import FakeClock, FakePowercapTree
from tests.conftest import make_unreadable, unprivileged


def test_discovers_packages_subzones_and_dram(powercap: FakePowercapTree) -> None:
    meter = RaplMeter(powercap.root)

    domains = {d.name: d for d in meter.domains()}

    assert sorted(domains) == ["cpu:0", "cpu:0/core", "cpu:1", "cpu:1/core", "dram:0", "dram:1"]
    assert domains["cpu:0/core"].part_of == "cpu:0"
    assert domains["cpu:0"].part_of is None and domains["dram:1"].part_of is None
    assert {d.kind for d in domains.values()} == {"measured"}
    assert {d.source for d in domains.values()} == {"rapl"}


def test_reports_counter_deltas_exactly_in_joules(powercap: FakePowercapTree) -> None:
    powercap.set_energy("intel-rapl:0", 100_000)
    meter = RaplMeter(powercap.root)
    powercap.set_energy("intel-rapl:0", 350_000)
    powercap.set_energy("intel-rapl:1:1", 40_000)

    energy = meter.read().energy_j

    assert energy["cpu:0"] == 0.25
    assert energy["dram:1"] == 0.04
    assert energy["cpu:1"] == 0.0


def test_unwraps_one_wraparound(powercap: FakePowercapTree) -> None:
    powercap.set_energy("intel-rapl:0", 900_000)
    meter = RaplMeter(powercap.root)
    powercap.set_energy("intel-rapl:0", 100_000)  # wrapped at 1_000_000

    assert meter.read().energy_j["cpu:0"] == 0.2


@pytest.mark.parametrize("impossible", [-5, 1_000_001])
def test_a_counter_outside_its_range_is_skipped_not_taken_as_a_wrap(
    powercap: FakePowercapTree, impossible: int
) -> None:
    clock = FakeClock()
    powercap.set_energy("intel-rapl:0", 0)
    tracker = EnergyTracker([RaplMeter(powercap.root, clock=clock)], sample_interval_s=None,
                            clock=clock).start()  # fmt: skip
    clock.advance(1.0)
    powercap.set_energy("intel-rapl:0", 10_000)  # 10 mW for 1 s
    tracker.poll()
    clock.advance(1.0)
    powercap.set_energy("intel-rapl:0", impossible)
    with pytest.warns(EnergySourceWarning, match=f"read {impossible} uJ, outside its range"):
        tracker.poll()  # skipped, not a wrap of about 1 J
    clock.advance(1.0)
    powercap.set_energy("intel-rapl:0", 30_000)
    totals = tracker.stop()

    assert totals.energy_by_domain["cpu:0"] == pytest.approx(0.03)
    assert totals.notes and "replaced by the power before them" in totals.notes[0]


def test_double_wraparound_over_a_long_window_is_counted_when_polled(
    powercap: FakePowercapTree,
) -> None:
    clock = FakeClock()
    tracker = EnergyTracker([f"rapl:{powercap.root}"], sample_interval_s=None, clock=clock).start()
    epoch = tracker.open("epoch", "train")
    for _ in range(5):  # 5 x 0.45 J = 2.25 J on a 1 J counter: wraps twice
        clock.advance(60.0)
        powercap.add_energy("intel-rapl:0", 450_000)
        tracker.poll()  # what the sampler thread does between batches

    result = tracker.close(epoch)
    tracker.stop()

    assert result.energy_by_domain["cpu:0"] == pytest.approx(2.25, abs=1e-12)
    assert result.duration_s == 300.0


def test_psys_is_the_total_and_packages_are_its_parts(tmp_path: Path) -> None:
    tree = FakePowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=0)
    tree.add_zone("intel-rapl:1", "psys", energy_uj=0)
    meter = RaplMeter(tmp_path)
    tree.set_energy("intel-rapl:0", 3_000_000)
    tree.set_energy("intel-rapl:1", 5_000_000)
    tracker = EnergyTracker([meter], sample_interval_s=None, clock=FakeClock())
    tracker.start()
    tree.set_energy("intel-rapl:0", 6_000_000)
    tree.set_energy("intel-rapl:1", 10_000_000)

    totals = tracker.stop()

    assert {d.name: d.part_of for d in meter.domains()} == {"cpu:0": "psys", "psys": None}
    assert totals.energy_j == 5.0  # psys alone; the package is inside it


def test_skips_mmio_zones_that_duplicate_the_package(powercap: FakePowercapTree) -> None:
    mmio = powercap.root / "intel-rapl-mmio:0"
    mmio.mkdir()
    (mmio / "name").write_text("package-0\n")

    names = [d.name for d in RaplMeter(powercap.root).domains()]

    assert names.count("cpu:0") == 1


def test_missing_powercap_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailableError, match="no powercap folder at .*estimate"):
        RaplMeter(tmp_path / "absent")


def test_folder_without_zones_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailableError, match="no RAPL zone"):
        RaplMeter(tmp_path)


def test_unreadable_counter_names_the_fix(world_readable_dir: Path) -> None:
    tree = FakePowercapTree(world_readable_dir / "powercap")
    tree.add_zone("intel-rapl:0", "package-0")
    make_unreadable(tree.energy_path("intel-rapl:0"))

    with unprivileged(), pytest.raises(MeterPermissionError, match="root only") as info:
        RaplMeter(tree.root)

    assert PERMISSION_FIX in str(info.value)
    assert isinstance(info.value, PermissionError)


def test_auto_falls_back_to_the_estimate_when_rapl_is_unreadable(world_readable_dir: Path) -> None:
    tree = FakePowercapTree(world_readable_dir / "powercap")
    tree.add_zone("intel-rapl:0", "package-0")
    make_unreadable(tree.energy_path("intel-rapl:0"))

    with unprivileged(), pytest.warns(EnergySourceWarning, match="estimated"):
        selection = detect(powercap_root=tree.root)

    rapl = next(f for f in selection.findings if f.source == "rapl")
    assert not rapl.chosen and "chmod a+r" in rapl.fix
    assert [m.name for m in selection.meters if m.name != "nvml"] == ["estimate"]


def test_auto_uses_rapl_and_estimates_only_missing_dram(tmp_path: Path) -> None:
    tree = FakePowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0")

    with pytest.warns(EnergySourceWarning, match="DRAM"):
        selection = detect(powercap_root=tmp_path)

    names = {
        d.name: d.kind
        for m in selection.meters
        for d in m.domains()
        if not d.name.startswith("gpu")
    }
    assert names == {"cpu:0": "measured", "dram": "estimated"}


def test_auto_reads_the_powercap_root_from_the_environment(
    powercap: FakePowercapTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREEN_CALLBACKS_POWERCAP_ROOT", str(powercap.root))

    selection = detect()

    assert any(m.name == "rapl" for m in selection.meters)
    assert not any(m.name == "estimate" for m in selection.meters)  # dram zones exist
