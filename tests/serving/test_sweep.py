"""The sweep: resumable records, the recommendation, the table and the figure."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from green_callbacks.serving import ServeConfig, ServingConfigError, ServingResult
from green_callbacks.serving import sweep as sweeps

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
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 3
    second = FakeServe()
    results = sweeps.run_sweep(None, STREAMS, list(COSTS), CONFIG, tmp_path, serve_one=second)
    assert second.calls == [("regular:64", "fixed:1"), ("regular:64", "fixed:16"),
                            ("regular:64", "maxwait:16/20")]  # fmt: skip
    assert [(r.stream, r.policy) for r in results] == [(s, p) for s in STREAMS for p in COSTS]
    assert (tmp_path / "results.csv").read_text().count("\n") == 7
    assert json.loads((tmp_path / "machine.json").read_text())["python"]


def test_a_folder_of_another_sweep_is_refused(tmp_path) -> None:
    sweeps.run_sweep(None, STREAMS, list(COSTS), CONFIG, tmp_path, serve_one=FakeServe())
    with pytest.raises(ServingConfigError, match="holds another sweep.*give a new --out"):
        sweeps.run_sweep(None, ["regular:8"], list(COSTS), CONFIG, tmp_path, serve_one=FakeServe())


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
