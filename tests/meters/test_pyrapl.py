"""The pyRAPL adapter against a fake pyRAPL module (pyRAPL is an optional extra)."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from green_callbacks.errors import MeterReadError, MeterUnavailableError, MissingExtraError
from green_callbacks.meters import PyRaplMeter


class FakePyRapl:
    """A fake pyRAPL module: Measurement results are the scripted deltas (µJ per socket)."""

    def __init__(
        self, deltas: list[tuple[list[float], list[float]]], setup_error: Exception | None = None
    ):
        self._deltas = deltas
        self._setup_error = setup_error
        module = self

        class Measurement:
            def __init__(self, label: str) -> None:
                self.result: Any = None

            def begin(self) -> None:
                pass

            def end(self) -> None:
                pkg, dram = module._deltas.pop(0)
                self.result = SimpleNamespace(pkg=pkg, dram=dram)

        self.Measurement = Measurement

    def setup(self) -> None:
        if self._setup_error is not None:
            raise self._setup_error


def test_chains_measurements_into_cumulative_joules(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePyRapl([([0.0, 0.0], [0.0]), ([1e6, 2e6], [5e5]), ([3e6, 0.0], [5e5])])
    monkeypatch.setitem(sys.modules, "pyRAPL", fake)
    meter = PyRaplMeter()
    meter.read()

    energy = meter.read().energy_j

    assert energy == {"cpu:0": 4.0, "cpu:1": 2.0, "dram:0": 1.0}
    assert {d.source for d in meter.domains()} == {"pyrapl"}


def test_negative_delta_is_a_read_error_not_a_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyRAPL", FakePyRapl([([0.0], []), ([-5.0], [])]))
    meter = PyRaplMeter()

    with pytest.raises(MeterReadError, match="does not unwrap it. Use meter 'rapl'"):
        meter.read()


def test_setup_failure_with_empty_message_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyRAPL", FakePyRapl([], setup_error=Exception()))

    with pytest.raises(MeterUnavailableError, match="no message.*green-callbacks meters"):
        PyRaplMeter()


def test_missing_pyrapl_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyRAPL", None)

    with pytest.raises(MissingExtraError, match=r"green-callbacks\[pyrapl\]"):
        PyRaplMeter()
