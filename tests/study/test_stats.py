"""Study statistics against answers known in closed form."""

from __future__ import annotations

import json
from math import comb, erfc, sqrt
from pathlib import Path

import pytest

pytest.importorskip("scipy", reason="needs the 'study' extra")

from green_callbacks import cli
from green_callbacks.study import StudyDataError, a12, adjust, compare, magnitude


def runs(**levels: list[float]) -> list[dict[str, object]]:
    return [{"framework": name, "energy_j": v} for name, values in levels.items() for v in values]


def test_complete_separation_of_eight_against_ten_is_exact() -> None:
    [c] = compare(runs(fast=list(range(8)), slow=list(range(100, 110))), "framework")

    assert c.test == "mann-whitney-u (exact)"  # scipy's choice: no ties, a sample of <= 8
    assert c.p_value == pytest.approx(2 / comb(18, 8), rel=1e-12)
    assert c.a12 == 0.0 and c.magnitude == "large"  # every "fast" run is the smaller
    assert c.winner == "fast" and c.ratio["slow"] == pytest.approx(104.5 / 3.5)
    assert c.levels["fast"].n == 8 and c.levels["fast"].median == 3.5


def separated_p(n: int, m: int) -> float:
    """The normal approximation's two-sided p for U = 0, with scipy's continuity correction."""
    mean, sd = n * m / 2, sqrt(n * m * (n + m + 1) / 12)
    return erfc((mean - 0.5) / sd / sqrt(2))


def test_complete_separation_of_ten_against_ten_is_asymptotic() -> None:
    [c] = compare(runs(fast=list(range(10)), slow=list(range(100, 110))), "framework")

    assert c.test == "mann-whitney-u (asymptotic)"  # both samples above 8: cheap at any size
    assert c.p_value == pytest.approx(separated_p(10, 10), rel=1e-9)
    assert c.a12 == 0.0 and c.winner == "fast"


@pytest.mark.parametrize(
    ("x", "y"),
    [([1, 2, 3], [4, 5, 6, 7]), ([1, 2, 2], [3, 4]), (list(range(8)), list(range(5, 30))),
     (list(range(9)), list(range(4, 13))), ([0.5] * 3 + [2.0], [1.0, 3.0, 4.0])],
)  # fmt: skip
def test_the_test_names_the_method_scipy_chose(x: list[float], y: list[float]) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    [c] = compare(runs(a=x, b=y), "framework")
    named = c.test.removeprefix("mann-whitney-u (").removesuffix(")")
    chosen = scipy_stats.mannwhitneyu(x, y, method=named).pvalue
    assert c.p_value == chosen  # the same figure as the method the label names


def test_identical_samples_have_no_effect() -> None:
    [c] = compare(runs(a=[1.0, 2.0, 3.0], b=[1.0, 2.0, 3.0]), "framework")

    assert c.a12 == 0.5 and c.magnitude == "negligible"
    assert c.p_value == 1.0 and c.winner is None
    assert a12([5, 5], [5, 5]) == 0.5


def test_ties_use_the_normal_approximation_and_say_so() -> None:
    [c] = compare(runs(a=[1.0, 1.0, 2.0, 3.0], b=[3.0, 4.0, 4.0, 5.0]), "framework")

    assert c.test == "mann-whitney-u (asymptotic)"
    assert c.a12 == pytest.approx((0 + 0 + 0 + 0.5) / 16)  # one tie (3 vs 3) counts half


def test_paired_runs_use_the_signed_rank_test() -> None:
    rows = [
        {"framework": name, "seed": seed, "energy_j": seed * 10 + (1.0 if name == "b" else 0.0)}
        for seed in range(10) for name in ("a", "b")
    ]  # fmt: skip
    [c] = compare(rows, "framework", paired_by="seed")

    # b is above a in all ten pairs: the exact two-sided signed-rank p is 2 / 2^10
    assert c.test == "wilcoxon" and c.p_value == pytest.approx(2 / 2**10)
    with pytest.raises(StudyDataError, match="share 0 pair key"):
        compare([{**r, "seed": f"{r['framework']}{r['seed']}"} for r in rows], "framework",
                paired_by="seed")  # fmt: skip


def test_three_levels_use_kruskal_wallis_with_eta_squared_and_every_pair() -> None:
    [c] = compare(runs(a=[1, 2, 3, 4, 5], b=[6, 7, 8, 9, 10], c=[11, 12, 13, 14, 15]), "framework")

    # ranks 1-5, 6-10, 11-15: H = 12/(15*16) * (15^2 + 40^2 + 65^2)/5 - 3*16 = 12.5
    assert c.test == "kruskal-wallis" and c.a12 is None
    assert c.eta_squared == pytest.approx((12.5 - 3 + 1) / (15 - 3))
    assert [(p.first, p.second) for p in c.pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert c.winner == "a"


def test_three_levels_with_one_value_everywhere_have_nothing_to_test() -> None:
    [c] = compare(runs(a=[0.5, 0.5], b=[0.5, 0.5], c=[0.5, 0.5]), "framework")

    assert (c.test, c.p_value, c.eta_squared, c.winner) == (
        "kruskal-wallis (all values equal)", 1.0, 0.0, None,
    )  # fmt: skip
    json.dumps(c.to_dict(), allow_nan=False)  # nothing that is not JSON


def test_holm_and_bonferroni_corrections() -> None:
    assert adjust([0.01, 0.04, 0.03], "bonferroni") == pytest.approx([0.03, 0.12, 0.09])
    # Holm: sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone
    assert adjust([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])
    rows = runs(fast=list(range(10)), slow=list(range(100, 110)))
    rows = [{**r, "duration_s": r["energy_j"]} for r in rows]
    plain = compare(rows, "framework")
    held = compare(rows, "framework", correction="holm")
    assert [c.p_value for c in held] == pytest.approx([2 * plain[0].p_value] * 2)
    assert held[0].test == "mann-whitney-u (asymptotic), holm"


def test_accuracy_is_better_higher_and_energy_lower() -> None:
    rows = [{"framework": "a", "energy_j": 10 + i, "accuracy": 0.9} for i in range(5)] + [
        {"framework": "b", "energy_j": 20 + i, "accuracy": 0.8} for i in range(5)
    ]
    energy, accuracy = compare(rows, "framework")

    assert (energy.metric, energy.best, energy.higher_is_better) == ("energy_j", "a", False)
    assert (accuracy.metric, accuracy.best, accuracy.higher_is_better) == ("accuracy", "a", True)


def test_magnitude_thresholds() -> None:
    assert [magnitude(v) for v in (0.5, 0.57, 0.65, 0.72, 0.2)] == [
        "negligible", "small", "medium", "large", "large",
    ]  # fmt: skip
    assert magnitude(0.65, "study") == "small"
    with pytest.raises(StudyDataError, match="thresholds must be one of"):
        magnitude(0.6, "cohen")


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        (runs(a=[1, 2], b=[3, 4]), {"factor": "backend"}, "no column 'backend'; its columns are"),
        (runs(a=[1, 2], b=[3, 4]), {"by": ["model"]}, "no column 'model'"),
        (runs(a=[1, 2, 3]), {}, "has one level"),
        (runs(a=[1, 2], b=[3]), {}, "level 'b' of 'framework' has 1 run"),
        (
            [{"framework": "a", "energy_j": "12 J"}] * 2 + [{"framework": "b", "energy_j": 1}] * 2,
            {"metrics": ["energy_j"]},
            "'energy_j' has '12 J', not a number",
        ),
        (runs(a=[1, 2], b=[3, 4]), {"correction": "fdr"}, "correction must be one of"),
    ],
)
def test_bad_tables_name_the_column_and_the_fix(
    rows: list[dict[str, object]], options: dict[str, object], message: str
) -> None:
    arguments = {"factor": "framework", **options}
    with pytest.raises(StudyDataError, match=message):
        compare(rows, **arguments)  # type: ignore[arg-type]


def test_the_command_reads_a_csv_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "runs.csv"
    lines = ["framework,workload,energy_cpu_j,duration_s"]
    lines += [f"lightning,cnn,{10 + i},{1 + i / 10}" for i in range(10)]
    lines += [f"keras,cnn,{30 + i},{3 + i / 10}" for i in range(10)]
    table.write_text("\n".join(lines) + "\n")

    code = cli.main(["study", "stats", str(table), "--factor", "framework", "--by", "workload",
                     "--json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    energy = next(c for c in report["comparisons"] if c["metric"] == "energy_cpu_j")
    assert energy["by"] == {"workload": "cnn"} and energy["winner"] == "lightning"
    assert energy["a12"] == 0.0 and energy["p_value"] == pytest.approx(separated_p(10, 10))
    assert set(energy["levels"]["keras"]) == {"n", "mean", "median", "std"}
    assert report["correlations"]["energy_cpu_j"] == pytest.approx(1.0)

    assert cli.main(["study", "stats", str(table), "--factor", "framework"]) == 0
    text = capsys.readouterr().out
    assert "lightning" in text and "<- winner" in text and "A12=0.000 (large)" in text


def test_the_command_refuses_a_bad_table_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "runs.csv"
    table.write_text("framework,energy_j\na,1\na,2\n")

    assert cli.main(["study", "stats", str(table), "--factor", "framework"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("green-callbacks: error:") and "has one level" in err
    assert len(err.strip().splitlines()) == 1
