"""The compression verdict and the interleaved inference measurement, without a framework."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from green_callbacks.compress import (
    CompressConfigError,
    CompressionCost,
    Measurement,
    ModelFigures,
    compare_inference,
    judge,
)
from green_callbacks.testing import FakeClock, FakeMeter

BEFORE = ModelFigures(
    params=1000, macs=5e4, size_bytes=4000, accuracy=0.95, j_per_sample=2e-3,
    s_per_sample=1e-4, batch_size=64, energy_kind="estimated", energy_source="cpu=estimate",
)  # fmt: skip


def test_within_the_allowed_drop_the_compressed_model_is_kept() -> None:
    after = replace(BEFORE, params=500, accuracy=0.94, j_per_sample=1e-3)
    report = judge("pruning", BEFORE, after, max_accuracy_drop=0.02)
    assert report.accepted and report.warnings == ()
    assert report.ratios()["params"] == 0.5 and report.ratios()["j_per_sample"] == 0.5
    assert report.accuracy_drop() == pytest.approx(0.01)
    assert report.metrics()["compress/accepted"] == 1.0


def test_too_large_a_drop_is_rejected_with_what_to_do() -> None:
    report = judge("pruning", BEFORE, replace(BEFORE, accuracy=0.90), max_accuracy_drop=0.02)
    assert not report.accepted
    assert "the original is kept" in report.verdict and "drop 0.0500" in report.verdict
    assert "fine-tune longer" in report.verdict


def test_a_limit_without_accuracy_figures_cannot_accept() -> None:
    report = judge("pruning", BEFORE, replace(BEFORE, accuracy=None), max_accuracy_drop=0.02)
    assert not report.accepted and "needs a held-out set" in report.verdict


def test_a_compressed_model_that_costs_more_gets_a_warning(tmp_path: Path) -> None:
    slower = replace(BEFORE, j_per_sample=2e-2, s_per_sample=1e-3)
    report = judge("quantization", BEFORE, slower, max_accuracy_drop=0.02)
    assert report.accepted  # accuracy is fine: size may be the goal; the cost is flagged
    assert len(report.warnings) == 2 and "10.00x" in report.warnings[0]
    saved = json.loads(report.write_json(tmp_path / "report.json").read_text())
    assert saved["ratios"]["j_per_sample"] == pytest.approx(10.0)
    assert saved["original"]["energy_kind"] == "estimated" and saved["warnings"] == list(
        report.warnings
    )


def test_models_take_turns_and_each_gets_its_median_round() -> None:
    clock = FakeClock()
    order: list[str] = []

    def model(name: str, seconds: float):  # type: ignore[no-untyped-def]
        def run() -> None:
            order.append(name)
            clock.advance(seconds)

        return run

    costs = compare_inference(
        {"a": model("a", 0.5), "b": model("b", 0.125)}, batch_size=4, rounds=3, min_round_s=0.25,
        meters=FakeMeter({"cpu:0": 25.0}, clock=clock), clock=clock, warmup_batches=1,
    )  # fmt: skip
    assert costs["a"].j_per_sample == pytest.approx(25.0 * 0.5 / 4)
    assert costs["b"].s_per_sample == pytest.approx(0.125 / 4)
    measured = order[2:]  # after one warm-up call each
    assert measured[:3] == ["a", "b", "b"] and measured.count("a") == 3  # interleaved rounds
    assert costs["b"].batches == 6 and costs["a"].energy_source.startswith("cpu:0=")


def test_bad_measurement_arguments_are_named() -> None:
    with pytest.raises(CompressConfigError, match="batch_size=0"):
        compare_inference({"a": lambda: None}, batch_size=0)


def test_the_energy_spent_compressing_and_the_inferences_that_pay_it_back(
    tmp_path: Path,
) -> None:
    spent = CompressionCost(energy_j=30.0, duration_s=3.0, energy_kind="estimated",
                            energy_source="cpu=estimate")  # fmt: skip
    saving = judge("pruning", BEFORE, replace(BEFORE, j_per_sample=1.5e-3), cost=spent)
    assert saving.payback_samples() == pytest.approx(60_000)  # 30 J / 0.5 mJ a sample
    assert saving.metrics()["compress/payback_samples"] == pytest.approx(60_000)
    assert saving.metrics()["compress/compressing_j"] == 30.0
    assert "compressing took 30 J in 3 s (estimated); paid back after 6e+04 inferences" in (
        saving.summary()
    )
    saved = json.loads(saving.write_json(tmp_path / "report.json").read_text())
    assert saved["cost"]["energy_j"] == 30.0 and saved["payback_samples"] == pytest.approx(6e4)

    costlier = judge("quantization", BEFORE, replace(BEFORE, j_per_sample=3e-3), cost=spent)
    assert costlier.payback_samples() is None and "never paid back" in costlier.summary()
    assert judge("pruning", BEFORE, BEFORE).payback_samples() is None  # not metered


def test_the_work_of_compressing_is_metered_with_the_measurement_s_meters() -> None:
    clock = FakeClock()
    meter = FakeMeter({"cpu": 100.0}, clock=clock)
    with Measurement(meters=[meter]).metering() as spent:
        clock.advance(2.5)  # compressing: 2.5 s at 100 W
    assert spent[0].energy_j == pytest.approx(250.0) and spent[0].energy_kind == "measured"
    assert spent[0].energy_source == "cpu=measured (fake scripted-power)"

    with pytest.raises(RuntimeError), Measurement(meters=[meter]).metering() as failed:
        raise RuntimeError("the compression failed")
    assert failed == []  # no cost for work that did not finish
