"""Other tools' outputs in the report: a compression report, a serving sweep, a search."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from green_callbacks.analysis.results import read_result
from green_callbacks.compress.report import ModelFigures, judge
from green_callbacks.hpo import CompareConfig, SearchResult, summarise

pytest.importorskip("matplotlib")
CLI = [sys.executable, "-m", "green_callbacks.cli"]


def figures(j: float, params: int, accuracy: float) -> ModelFigures:
    return ModelFigures(params=params, macs=1e6 * params / 1000, size_bytes=4 * params,
                        accuracy=accuracy, j_per_sample=j, s_per_sample=j / 100,
                        batch_size=256, energy_kind="measured",
                        energy_source="cpu:0=measured (rapl)")  # fmt: skip


def test_a_compression_report_is_drawn_as_ratios_with_its_verdict(tmp_path: Path) -> None:
    report = judge("pruning", figures(0.02, 1000, 0.95), figures(0.01, 500, 0.94), 0.02)
    path = report.write_json(tmp_path / "compression_report.json")
    result = read_result(tmp_path, tmp_path / "out")  # the folder holding it, as Lightning writes
    assert result is not None and result.kind == "compression"
    assert report.verdict in result.text and "0.02 -> 0.01 J/sample (measured" in result.text
    assert result.figures[0].stat().st_size > 5_000
    assert read_result(path, tmp_path / "out").title == "Compression: pruning"


def test_a_serving_sweep_folder_gives_its_table_figure_and_recommendation(tmp_path: Path) -> None:
    from green_callbacks.serving import sweep
    from tests.serving.test_sweep import CONFIG, COSTS, STREAMS, FakeServe

    results = sweep.run_sweep(None, STREAMS, list(COSTS), CONFIG, tmp_path / "sweep",
                              serve_one=FakeServe())  # fmt: skip
    sweep.write_recommendations(tmp_path / "sweep", sweep.recommend(results, 50))
    (tmp_path / "out").mkdir()
    result = read_result(tmp_path / "sweep", tmp_path / "out")
    assert result is not None and result.kind == "serving"
    assert "regular:16: use maxwait:16/20" in result.text
    assert result.figures[0].name == "serving_1.png" and result.figures[0].is_file()


def test_a_search_comparison_and_the_report_command_over_everything(tmp_path: Path) -> None:
    config = CompareConfig(strategies=["random", "tpe"], repetitions=1, rounds=3, epochs=1)
    searches = [SearchResult(s, 0, [0.5, 0.9, 0.92], [10.0, 11.0, 12.0], 0.5, 0.1, "estimated")
                for s in ("random", "tpe")]  # fmt: skip
    folder = tmp_path / "hpo"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(
        {"config": {"target": 0.9}, "strategies": summarise(searches, config)}))  # fmt: skip
    (folder / "searches.csv").write_text("strategy,repetition\nrandom,0\ntpe,0\n")
    report = judge("quantization", figures(0.02, 1000, 0.95), figures(0.015, 1000, 0.95))
    report.write_json(tmp_path / "compression_report.json")
    done = subprocess.run([*CLI, "report", str(folder), str(tmp_path / "compression_report.json"),
                           "--out", str(tmp_path / "page")], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "page" / "report.html").read_text(encoding="utf-8")
    assert "Search strategies compared" in page and "Compression: quantization" in page
    assert "random" in page and "tpe" in page


def test_a_folder_of_nothing_known_is_no_result(tmp_path: Path) -> None:
    assert read_result(tmp_path, tmp_path) is None
    (tmp_path / "x.json").write_text("{}")
    assert read_result(tmp_path / "x.json", tmp_path) is None


def test_a_study_folder_gives_its_comparison_and_box_plots(tmp_path: Path) -> None:
    from green_callbacks.study import runner
    from green_callbacks.study.definition import parse
    from green_callbacks.testing import constant_power_trace

    data = {"factors": {"size": [2000, 20000]},
            "workloads": [{"name": "spin", "entry": "green_callbacks.study.workloads:spin"}],
            "study": {"phases": ["train"], "repetitions": 3, "cooldown_s": 0.0,
                      "meters": [constant_power_trace(tmp_path, 40.0)]}}  # fmt: skip
    runner.run_study(parse(data, "inline"), tmp_path / "study", progress=io.StringIO())
    result = read_result(tmp_path / "study", tmp_path / "out")
    assert result is not None and result.kind == "study"
    assert "size" in result.text and "energy_j" in result.text
    assert any(p.name.startswith("study_box_") for p in result.figures)
