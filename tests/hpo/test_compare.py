"""Search strategies compared: the figures per search and per strategy, and a real small run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="needs the 'optuna' extra")
pytest.importorskip("torch", reason="needs the 'torch' extra")
pytest.importorskip("sklearn", reason="needs the 'demo' extra")

from green_callbacks import cli
from green_callbacks.hpo import (
    CompareConfig,
    CompareConfigError,
    SearchResult,
    grid,
    summarise,
)
from green_callbacks.testing import constant_power_trace


def result(strategy: str, accuracies: list[float], energies: list[float]) -> SearchResult:
    return SearchResult(strategy, 0, accuracies, energies, overhead_j=2.0, overhead_s=0.5,
                        kind="replayed")  # fmt: skip


def test_a_search_knows_its_best_so_far_its_rounds_and_its_energy_to_a_target() -> None:
    r = result("tpe", [0.5, 0.8, 0.7, 0.92, 0.95], [10.0, 10.0, 20.0, 10.0, 10.0])

    assert r.best_so_far() == [0.5, 0.8, 0.8, 0.92, 0.95]
    assert r.rounds_to_best() == 5
    assert r.energy_to(0.9) == 50.0 and r.energy_to(0.99) is None


def test_strategies_are_summarised_over_repetitions() -> None:
    config = CompareConfig(strategies=["random", "tpe"], repetitions=2, rounds=3, target=0.9)
    results = [
        result("random", [0.5, 0.95, 0.6], [10.0, 10.0, 10.0]),
        result("random", [0.91, 0.5, 0.5], [10.0, 10.0, 10.0]),
        result("tpe", [0.5, 0.6, 0.7], [20.0, 20.0, 20.0]),
        result("tpe", [0.5, 0.6, 0.93], [20.0, 20.0, 20.0]),
    ]
    summary = summarise(results, config)

    assert summary["random"]["rounds_to_best_median"] == 1.5  # rounds 2 and 1
    assert summary["random"]["energy_to_target_median_j"] == 15.0  # 20 J and 10 J
    assert summary["tpe"]["reached_target"] == "1/2"
    assert summary["tpe"]["energy_to_target_median_j"] == 60.0
    assert summary["tpe"]["trial_energy_cv"] == 0.0  # every trial the same energy
    assert summary["random"]["sampler_j_per_suggestion"] == pytest.approx(4.0 / 6)


def test_the_grid_has_five_values_per_parameter_on_the_right_scale() -> None:
    values = grid(3)
    assert [len(v) for v in values.values()] == [5, 5, 5]
    assert values["lr"] == pytest.approx([1e-4, 10**-3.25, 10**-2.5, 10**-1.75, 1e-1])
    assert values["beta1"] == pytest.approx([0.8, 0.8475, 0.895, 0.9425, 0.99])
    assert set(grid(5)) == {"lr", "beta1", "beta2", "eps", "weight_decay"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"strategies": ["bayes"]}, "strategies must be drawn from"),
     ({"model": "resnet"}, "model must be one of"),
     ({"params": 4}, "params must be 3 or 5"),
     ({"rounds": 0}, "rounds must be a whole number >= 1"),
     ({"target": 1.5}, r"target must be an accuracy in \(0, 1\]"),
     ({"min_gain_per_kj": -1.0}, "min_gain_per_kj must be >= 0")],
)  # fmt: skip
def test_bad_comparisons_name_the_value(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(CompareConfigError, match=message):
        CompareConfig(**arguments)  # type: ignore[arg-type]


def test_a_small_real_comparison_writes_its_table_and_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = constant_power_trace(tmp_path, 80.0)
    code = cli.main(["hpo", "compare", "--strategies", "random", "tpe", "--repetitions", "1",
                     "--rounds", "3", "--epochs", "1", "--meter", trace, "--target", "0.5",
                     "--out", str(tmp_path / "out")])  # fmt: skip

    assert code == 0
    printed = capsys.readouterr().out
    assert "strategy" in printed and "random" in printed and "energy replayed" in printed
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["strategies"]) == {"random", "tpe"}
    search = results["searches"][0]
    assert len(search["accuracies"]) == 3 and min(search["energies_j"]) > 0
    assert search["kind"] == "replayed"
    assert (tmp_path / "out" / "best_so_far.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "searches.csv").read_text().startswith("strategy,repetition")


def test_a_search_stops_once_its_best_gains_too_little_per_kj(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = constant_power_trace(tmp_path, 80.0)
    code = cli.main(["hpo", "compare", "--strategies", "random", "--repetitions", "1",
                     "--rounds", "9", "--epochs", "1", "--meter", trace, "--target", "0.5",
                     "--min-gain-per-kj", "1000", "--out", str(tmp_path / "out")])  # fmt: skip

    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    # judged after 1 + 5 trials (GainStop's over_trials): no search gains 1000 per kJ
    assert len(results["searches"][0]["accuracies"]) == 6
    assert results["strategies"]["random"]["rounds_median"] == 6
    assert "J spent" in capsys.readouterr().out


def test_a_rerun_measures_only_the_searches_the_folder_lacks(tmp_path: Path) -> None:
    """A fake search (named as such): the ledger's resume, not a real training, is tested."""
    from green_callbacks.core.ledger import LedgerMismatchError
    from green_callbacks.hpo import compare

    ran: list[tuple[str, int]] = []

    def fake_search(config: CompareConfig, strategy: str, repetition: int) -> SearchResult:
        ran.append((strategy, repetition))
        return SearchResult(strategy, repetition, [0.5, 0.9 + repetition / 100],
                            [10.0, 10.0 + repetition], kind="replayed")  # fmt: skip

    out = tmp_path / "out"
    first = CompareConfig(strategies=["random"], repetitions=1, rounds=2, meters=["estimate"])
    compare(first, out, search_one=fake_search, progress=io.StringIO())
    more = CompareConfig(strategies=["random", "tpe"], repetitions=2, rounds=2, target=0.95,
                         meters=["estimate"])  # fmt: skip
    said = io.StringIO()
    summary, folder = compare(more, out, search_one=fake_search, progress=said)

    assert ran == [("random", 0), ("tpe", 0), ("random", 1), ("tpe", 1)]  # random #0 once
    assert folder == out and "resuming: 1 of 4 searches already in" in said.getvalue()
    assert summary["random"]["reached_target"] == "0/2"  # a new target reads the same searches
    searches = json.loads((out / "results.json").read_text())["searches"]
    assert [(s["strategy"], s["repetition"]) for s in searches] == [
        ("random", 0), ("tpe", 0), ("random", 1), ("tpe", 1)]  # fmt: skip
    other = CompareConfig(strategies=["random"], repetitions=1, rounds=5, meters=["estimate"])
    with pytest.raises(LedgerMismatchError, match="rounds"):
        compare(other, out, search_one=fake_search, progress=io.StringIO())
    _, beside = compare(other, out, search_one=fake_search, progress=io.StringIO(),
                        force_new=True)  # fmt: skip
    assert beside == tmp_path / "out-v2" and ran[-1] == ("random", 0)
