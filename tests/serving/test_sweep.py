"""The sweep: resumable records, the recommendation, the table and the figure."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from green_callbacks.core.ledger import LedgerMismatchError
from green_callbacks.serving import ServeConfig, ServingConfigError, ServingResult, serve
from green_callbacks.serving import sweep as sweeps
from green_callbacks.testing import FakeClock, FakeMeter

BASE = ServingResult(
    stream="", policy="", rate_rps=0.0, requests=50, served=50, batches=10, mean_batch=5.0,
    duration_s=2.0, energy_j=10.0, busy_j=4.0, idle_w=3.0, j_per_request=0.2,
    j_per_request_above_idle=0.08, latency_min_ms=2.0, latency_mean_ms=10.0, latency_p50_ms=9.0,
    latency_p95_ms=15.0, latency_p99_ms=20.0, latency_max_ms=25.0, throughput_rps=25.0,
    queue_growth_rps=0.0, kept_up=True, capped=False, energy_kind="replayed",
    energy_source="cpu:0=replayed (trace)",
)  # fmt: skip
COSTS = {"fixed:1": (0.5, 2.0), "fixed:16": (0.1, 400.0), "maxwait:16/20": (0.2, 30.0)}
"""policy -> (J/request, p99 ms) for the fake server."""


class FakeServe:
    """Stands in for serve(): a scripted result per policy; can fail on the n-th call."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple[str, str]] = []
        self.fail_at = fail_at

    def __call__(self, run_batch, stream, policy, config):
        self.calls.append((stream.label, policy.label))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        j, p99 = COSTS[policy.label]
        rate = stream.rate_rps
        return replace(BASE, stream=stream.label, policy=policy.label, rate_rps=rate,
                       requests=config.requests, j_per_request=j / (rate / 16),
                       latency_p99_ms=p99, latency_max_ms=p99 * 1.2)  # fmt: skip


STREAMS = ["regular:16", "regular:64"]
CONFIG = ServeConfig(requests=50)


def test_an_interrupted_sweep_keeps_what_it_measured_and_resumes(tmp_path) -> None:
    first = FakeServe(fail_at=4)
    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep(None, STREAMS, list(COSTS), CONFIG, tmp_path, serve_one=first)
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 1 + 3  # header, 3 runs
    second = FakeServe()
    results = sweeps.run_sweep(None, STREAMS, list(COSTS), CONFIG, tmp_path, serve_one=second)
    assert second.calls == [("regular:64", "fixed:1"), ("regular:64", "fixed:16"),
                            ("regular:64", "maxwait:16/20")]  # fmt: skip
    assert [(r.stream, r.policy) for r in results] == [(s, p) for s in STREAMS for p in COSTS]
    assert (tmp_path / "results.csv").read_text().count("\n") == 7
    assert json.loads((tmp_path / "machine.json").read_text())["python"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": "cnn"}, "model: 'mlp' in the folder, 'cnn' now"),
        ({"config": ServeConfig(requests=50, max_s=5.0)}, "config.max_s: 60.0 in the folder"),
        ({"config": ServeConfig(requests=50, meters="estimate")}, "meters: "),
    ],
)
def test_a_folder_of_another_sweep_is_refused_with_the_difference_named(
    tmp_path, change, named
) -> None:
    sweeps.run_sweep(None, STREAMS, list(COSTS), CONFIG, tmp_path, model="mlp",
                     serve_one=FakeServe())  # fmt: skip
    rerun = {"model": "mlp", "config": CONFIG, **change}
    second = FakeServe()
    with pytest.raises(LedgerMismatchError, match=f"another serve-sweep definition: .*{named}"):
        sweeps.run_sweep(None, STREAMS, list(COSTS), rerun["config"], tmp_path,
                         model=rerun["model"], serve_one=second)  # fmt: skip
    assert second.calls == []  # nothing measured, the old figures untouched


def test_a_policy_added_to_a_sweep_measures_only_that_one(tmp_path) -> None:
    sweeps.run_sweep(None, STREAMS, ["fixed:1"], CONFIG, tmp_path, serve_one=FakeServe())
    second = FakeServe()
    results = sweeps.run_sweep(None, STREAMS, ["fixed:1", "fixed:16"], CONFIG, tmp_path,
                               serve_one=second)  # fmt: skip
    assert second.calls == [("regular:16", "fixed:16"), ("regular:64", "fixed:16")]
    assert [(r.stream, r.policy) for r in results] == [
        (s, p) for s in STREAMS for p in ("fixed:1", "fixed:16")
    ]


def test_specs_are_all_checked_before_anything_runs(tmp_path) -> None:
    fake = FakeServe()
    with pytest.raises(ServingConfigError, match="'fixed:x'"):
        sweeps.run_sweep(None, STREAMS, ["fixed:1", "fixed:x"], CONFIG, tmp_path, serve_one=fake)
    assert fake.calls == []


def test_the_recommendation_is_the_cheapest_policy_meeting_the_objective(tmp_path) -> None:
    results = sweeps.run_sweep(None, STREAMS, list(COSTS), CONFIG, tmp_path, serve_one=FakeServe())
    found = sweeps.recommend(results, slo_ms=50)
    assert [(r.stream, r.chosen) for r in found] == [("regular:16", "maxwait:16/20"),
                                                     ("regular:64", "maxwait:16/20")]  # fmt: skip
    assert found[0].saving_vs_batch1 == 0.6 and found[0].saving_vs_worst == 0.6
    assert "use maxwait:16/20" in found[0].message and "60% less than batch 1" in found[0].message
    loose = sweeps.recommend(results, slo_ms=1000)
    assert loose[0].chosen == "fixed:16" and loose[0].saving_vs_batch1 == 0.8
    path = sweeps.write_recommendations(tmp_path, found)
    assert json.loads(path.read_text())[0]["chosen"] == "maxwait:16/20"


def test_an_objective_no_policy_meets_names_the_closest() -> None:
    results = [replace(BASE, stream="regular:16", policy=p, latency_p99_ms=c[1], j_per_request=c[0])
               for p, c in COSTS.items()]  # fmt: skip
    [found] = sweeps.recommend(results, slo_ms=1.0)
    assert found.chosen is None and found.closest == "fixed:1"
    assert "no policy meets p99 <= 1 ms" in found.message and "closest is fixed:1" in found.message


def test_a_policy_that_did_not_keep_up_is_never_recommended() -> None:
    results = [replace(BASE, stream="s", policy="fixed:1", j_per_request=0.5, latency_p99_ms=5.0),
               replace(BASE, stream="s", policy="fixed:8", j_per_request=0.1, latency_p99_ms=5.0,
                       kept_up=False)]  # fmt: skip
    assert sweeps.recommend(results, slo_ms=10)[0].chosen == "fixed:1"


def test_the_table_and_the_figure(tmp_path) -> None:
    results = sweeps.run_sweep(None, STREAMS, list(COSTS), CONFIG, tmp_path, serve_one=FakeServe())
    text = sweeps.format_table(results)
    assert text.splitlines()[0].split()[:4] == ["stream", "policy", "batch", "J/req"]
    assert "energy: replayed (cpu:0=replayed (trace))" in text
    path = sweeps.plot(results, tmp_path, slo_ms=50)
    assert path.stat().st_size > 10_000


def served_nothing_or_scripted(run_batch, stream, policy, config):
    """fixed:32 is served for real on a fake clock, where a 2 s cap ends it before any batch;
    the other policies are scripted."""
    if policy.label != "fixed:32":
        return FakeServe()(run_batch, stream, policy, config)
    clock = FakeClock()
    real = replace(config, max_s=2.0, warmup_batches=0, idle_s=0.0, sample_interval_s=None,
                   meters=FakeMeter({"cpu:0": 10.0}, clock=clock))  # fmt: skip
    return serve(lambda n: clock.advance(0.01), stream, policy, real, clock=clock,
                 sleep=clock.sleep)  # fmt: skip


def test_a_configuration_that_served_nothing_is_recorded_as_such(tmp_path) -> None:
    policies = ["fixed:1", "fixed:32"]
    scripted = served_nothing_or_scripted
    results = sweeps.run_sweep(None, ["regular:1"], policies, CONFIG, tmp_path,
                               serve_one=scripted, progress=io.StringIO())  # fmt: skip
    nothing = results[1]
    assert nothing.served == 0 and nothing.j_per_request is None and nothing.latency_p99_ms is None
    assert "nothing was served" in nothing.note
    # Kept in the ledger as none (not NaN), and read back by a rerun, which measures nothing.
    line = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[2])
    assert line["result"]["j_per_request"] is None
    again = FakeServe()
    assert sweeps.run_sweep(None, ["regular:1"], policies, CONFIG, tmp_path, serve_one=again,
                            progress=io.StringIO()) == results  # fmt: skip
    assert again.calls == []
    [found] = sweeps.recommend(results, slo_ms=100_000)
    assert found.chosen == "fixed:1"
    row = sweeps.format_table(results).splitlines()[2].split()
    assert row[:4] == ["regular:1", "fixed:32", "0.0", "-"] and row[-1] == "NO"
    assert "regular:1 fixed:32: nothing was served" in sweeps.format_table(results)
    assert sweeps.plot(results, tmp_path, slo_ms=100).stat().st_size > 10_000
    [alone] = sweeps.recommend(results[1:], slo_ms=100)
    assert alone.chosen is None and alone.closest is None
    assert "no policy answered a request" in alone.message
