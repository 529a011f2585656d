from __future__ import annotations

from pathlib import Path

import pytest

from green_callbacks.errors import MeterSpecError, MeterUnavailableError
from green_callbacks.meters import EstimateMeter, MeterSpec, open_meters, parse_spec
from green_callbacks.testing import FakeClock, FakeMeter, FakePowercapTree


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", MeterSpec("auto")),
        (" NVML ", MeterSpec("nvml")),
        ("rapl", MeterSpec("rapl")),
        ("rapl:/sys/class/powercap", MeterSpec("rapl", "/sys/class/powercap")),
        ("estimate:tdp_w=65,ram=used", MeterSpec("estimate", "tdp_w=65,ram=used")),
        ("replay:/tmp/a:b.csv", MeterSpec("replay", "/tmp/a:b.csv")),
    ],
)
def test_parse_valid_specs(text: str, expected: MeterSpec) -> None:
    assert parse_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty"),
        ("watts", "unknown meter 'watts'"),
        ("nvml:0", "takes no argument"),
        ("rapl:", "gives no argument"),
        ("replay", "needs a trace file"),
    ],
)
def test_malformed_specs_name_the_valid_forms(text: str, message: str) -> None:
    with pytest.raises(MeterSpecError, match=message):
        parse_spec(text)


def test_estimate_options_reach_the_model() -> None:
    selection = open_meters("estimate:tdp_w=65,idle_fraction=0.1,ram=used,parts=cpu")
    meter = selection.meters[0]

    assert isinstance(meter, EstimateMeter)
    assert (
        meter.config.tdp_w,
        meter.config.idle_fraction,
        meter.config.ram,
        meter.config.parts,
    ) == (65.0, 0.1, "used", ("cpu",))


@pytest.mark.parametrize(
    ("text", "message"),
    [("estimate:tdp=65", "key=value with key in"), ("estimate:tdp_w=lots", "needs a number")],
)
def test_bad_estimate_options(text: str, message: str) -> None:
    with pytest.raises(MeterSpecError, match=message):
        open_meters(text)


def test_explicit_meter_that_cannot_work_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailableError, match="no powercap folder"):
        open_meters(f"rapl:{tmp_path / 'absent'}")


def test_domains_reported_twice_are_refused_and_meters_closed(tmp_path: Path) -> None:
    tree = FakePowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0")
    duplicate = FakeMeter({"cpu:0": 1.0}, clock=FakeClock())

    with pytest.raises(MeterSpecError, match="'cpu:0' is reported by both"):
        open_meters([f"rapl:{tmp_path}", duplicate])
    assert duplicate.closed


def test_meter_objects_and_specs_mix() -> None:
    fake = FakeMeter({"gpu:0": 1.0}, clock=FakeClock())

    selection = open_meters([fake, "estimate"])

    assert [m.name for m in selection.meters] == ["fake", "estimate"]
