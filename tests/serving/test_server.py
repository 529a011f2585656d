"""The queue and the batching policies on a fake clock, with a fake model of known service time."""

from __future__ import annotations

import json

import pytest

from green_callbacks.serving import (
    ServeConfig,
    ServingConfigError,
    ServingError,
    ServingResult,
    parse_policy,
    parse_stream,
    serve,
)
from green_callbacks.testing import FakeClock, FakeMeter

IDLE_W, BUSY_W = 50.0, 80.0


class FakeModel:
    """A model whose batch takes ``fixed_s + per_request_s * n`` on the fake clock, at BUSY_W."""

    def __init__(
        self, clock: FakeClock, meter: FakeMeter, fixed_s: float, per_request_s: float = 0.0
    ):
        self.clock, self.meter = clock, meter
        self.fixed_s, self.per_request_s = fixed_s, per_request_s
        self.sizes: list[int] = []

    def __call__(self, n: int) -> None:
        self.sizes.append(n)
        self.meter.set_power(**{"cpu:0": BUSY_W})
        self.clock.advance(self.fixed_s + self.per_request_s * n)
        self.meter.set_power(**{"cpu:0": IDLE_W})


def run(stream: str, policy: str, *, requests: int, fixed_s: float, per_request_s: float = 0.0,
        idle_s: float = 0.0, max_s: float = 60.0):  # fmt: skip
    clock = FakeClock()
    meter = FakeMeter({"cpu:0": IDLE_W}, clock=clock)
    model = FakeModel(clock, meter, fixed_s, per_request_s)
    config = ServeConfig(requests=requests, max_s=max_s, warmup_batches=0, idle_s=idle_s,
                         meters=meter, sample_interval_s=None)  # fmt: skip
    result = serve(model, parse_stream(stream), parse_policy(policy), config,
                   clock=clock, sleep=clock.sleep)  # fmt: skip
    return result, model


@pytest.mark.parametrize(("rate", "batch"), [(100.0, 4), (32.0, 8), (16.0, 1)])
def test_fixed_batches_make_the_first_request_wait_for_the_rest(rate: float, batch: int) -> None:
    service = 0.005
    result, model = run(f"regular:{rate:g}", f"fixed:{batch}", requests=4 * batch, fixed_s=service)
    assert model.sizes == [batch] * 4
    # The first request of each batch waits (B - 1) / f for the others, then one service time.
    assert result.latency_max_ms == pytest.approx(((batch - 1) / rate + service) * 1000.0, abs=1e-6)
    assert result.latency_p50_ms >= service * 1000.0 - 1e-6
    assert result.kept_up and not result.capped and result.served == 4 * batch
    assert result.mean_batch == batch


def test_greedy_batches_grow_towards_the_cap_under_overload() -> None:
    # 1000 requests/s against a model that needs 20 ms + 1 ms per request: batch 1 could serve 48/s.
    result, model = run(
        "regular:1000", "greedy:32", requests=400, fixed_s=0.020, per_request_s=0.001
    )
    assert model.sizes[0] == 1
    assert max(model.sizes) == 32
    assert model.sizes[:6] == sorted(model.sizes[:6])  # growing
    assert model.sizes[-2] == 32  # at the cap under load (the last one takes what is left)
    assert result.mean_batch > 20


def test_greedy_without_a_cap_takes_everything_waiting() -> None:
    _result, model = run("regular:1000", "greedy", requests=200, fixed_s=0.050)
    assert max(model.sizes) > 32
    assert sum(model.sizes) == 200


@pytest.mark.parametrize("rate", [20.0, 64.0, 150.0])
def test_maxwait_bounds_the_wait_by_t_plus_one_service_time(rate: float) -> None:
    service, wait = 0.004, 0.030
    result, model = run(f"poisson:{rate:g}:3", "maxwait:16/30", requests=300, fixed_s=service)
    # Waiting for dispatch is at most T, plus a batch already in flight; then its own service.
    assert result.latency_max_ms <= (wait + 2 * service) * 1000.0 + 1e-6
    assert max(model.sizes) <= 16
    assert result.kept_up


def test_fixed_batch_without_maxwait_makes_a_slow_stream_wait_long() -> None:
    fixed, _ = run("regular:10", "fixed:16", requests=32, fixed_s=0.004)
    dynamic, _ = run("regular:10", "maxwait:16/30", requests=32, fixed_s=0.004)
    assert fixed.latency_max_ms == pytest.approx(1504.0, abs=1e-6)  # 15 gaps of 100 ms + 4 ms
    assert dynamic.latency_max_ms <= 34.0 + 1e-6
    # The price: 32 batches of one instead of 2 of 16, each 4 ms at 30 W above idle.
    assert fixed.energy_j == pytest.approx(IDLE_W * 3.104 + (BUSY_W - IDLE_W) * 0.004 * 2)
    assert dynamic.energy_j == pytest.approx(IDLE_W * 3.104 + (BUSY_W - IDLE_W) * 0.004 * 32)


def test_energy_is_idle_power_over_the_period_plus_the_busy_extra() -> None:
    result, model = run("regular:50", "fixed:5", requests=50, fixed_s=0.010, idle_s=1.0)
    busy_s = 0.010 * len(model.sizes)
    assert result.idle_w == pytest.approx(IDLE_W)
    assert result.energy_j == pytest.approx(IDLE_W * result.duration_s + (BUSY_W - IDLE_W) * busy_s)
    assert result.busy_j == pytest.approx(BUSY_W * busy_s)
    assert result.j_per_request_above_idle == pytest.approx((BUSY_W - IDLE_W) * busy_s / 50)
    assert result.duration_s == pytest.approx(49 / 50 + 0.010)  # last arrival + its service
    assert result.throughput_rps == pytest.approx(50 / result.duration_s)
    assert result.energy_kind == "measured" and "cpu:0=" in result.energy_source


def test_without_an_idle_baseline_the_above_idle_figure_is_absent() -> None:
    result, _ = run("regular:50", "fixed:5", requests=10, fixed_s=0.010)
    assert result.idle_w is None and result.j_per_request_above_idle is None


def test_a_server_that_cannot_keep_up_is_capped_and_says_so() -> None:
    result, _ = run("regular:100", "fixed:1", requests=500, fixed_s=0.050, max_s=2.0)
    assert result.capped and not result.kept_up
    assert result.served < 500
    assert result.queue_growth_rps == pytest.approx(80.0, rel=0.05)  # 100/s in, 20/s out
    assert result.duration_s == pytest.approx(2.0, abs=0.05)


def test_an_overloaded_server_that_drains_after_the_last_arrival_did_not_keep_up() -> None:
    # 100 requests/s for 10 s against a model that serves 20/s at batch 1: everything is
    # answered within the cap (the drain takes 50 s), so only the arrival period can tell.
    result, _ = run("regular:100", "fixed:1", requests=1000, fixed_s=0.050, max_s=100.0)
    assert result.served == 1000 and not result.capped
    assert not result.kept_up
    # Fitted over the arrival period only: 100/s in, 20/s out (the drain would pull it to ~0).
    assert result.queue_growth_rps == pytest.approx(80.0, rel=0.01)
    assert result.throughput_rps == pytest.approx(1000 / 50.0, rel=0.001)
    assert result.note == ""


def test_a_server_just_fast_enough_kept_up() -> None:
    # 100 requests/s against 9.5 ms a request: busy 95 % of the time, the queue never grows.
    result, _ = run("regular:100", "fixed:1", requests=1000, fixed_s=0.0095)
    assert result.kept_up and result.queue_growth_rps == 0.0


def test_the_last_partial_batch_is_answered_within_one_batch_of_the_last_arrival() -> None:
    # 40 requests in batches of 32: the last 8 go when the stream ends, one batch later.
    result, model = run("regular:50", "fixed:32", requests=40, fixed_s=0.010)
    assert model.sizes == [32, 8]
    assert result.kept_up


def test_a_configuration_that_served_nothing_has_no_latencies_and_says_why() -> None:
    # One request a second, batches of 32, a 5 s cap: nothing is ever dispatched.
    result, model = run("regular:1", "fixed:32", requests=64, fixed_s=0.010, max_s=5.0)
    assert model.sizes == [] and result.served == 0 and result.capped and not result.kept_up
    figures = (result.j_per_request, result.j_per_request_above_idle, result.latency_min_ms,
               result.latency_mean_ms, result.latency_p50_ms, result.latency_p95_ms,
               result.latency_p99_ms, result.latency_max_ms)  # fmt: skip
    assert figures == (None,) * 8
    assert "nothing was served before the wall-clock cap (5 s)" in result.note
    assert result.energy_j == pytest.approx(IDLE_W * 5.0, rel=1e-3)
    assert ServingResult.from_record(json.loads(json.dumps(result.to_dict()))) == result


@pytest.mark.parametrize("data", [None, "lots", [], {"stream": "s"}, {"bogus": 1}])
def test_a_result_of_another_shape_reads_as_none(data: object) -> None:
    assert ServingResult.from_record(data) is None


def test_a_model_that_fails_names_the_batch_size() -> None:
    clock = FakeClock()

    def model(n: int) -> None:
        clock.advance(0.001)
        if n > 2:
            raise RuntimeError("shape mismatch")

    config = ServeConfig(requests=10, warmup_batches=0, idle_s=0.0, sample_interval_s=None,
                         meters=FakeMeter({"cpu:0": 1.0}, clock=clock))  # fmt: skip
    with pytest.raises(
        ServingError, match=r"batch of 4 request\(s\): RuntimeError: shape mismatch"
    ):
        serve(model, parse_stream("regular:1000"), parse_policy("fixed:4"), config,
              clock=clock, sleep=clock.sleep)  # fmt: skip


def test_warm_up_runs_the_policy_size_and_one_before_measuring() -> None:
    clock = FakeClock()
    meter = FakeMeter({"cpu:0": IDLE_W}, clock=clock)
    model = FakeModel(clock, meter, 0.001)
    config = ServeConfig(requests=8, warmup_batches=3, idle_s=0.0, meters=meter,
                         sample_interval_s=None)  # fmt: skip
    serve(model, parse_stream("regular:100"), parse_policy("fixed:8"), config,
          clock=clock, sleep=clock.sleep)  # fmt: skip
    assert model.sizes == [1, 8, 1, 8, 1, 8, 8]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("regular", "is not one of"),
        ("regular:-3", "positive number"),
        ("regular:fast", "positive number"),
        ("regular:3:1", "takes no seed"),
        ("poisson:5:x", "not an integer"),
        ("bursty:5", "is not one of"),
        ("replay:/nonexistent/arrivals.csv", "no file"),
    ],
)
def test_bad_streams_are_named(spec: str, message: str) -> None:
    with pytest.raises(ServingConfigError, match=message):
        parse_stream(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fixed", "is not one of"),
        ("fixed:0", "whole number >= 1"),
        ("fixed:2.5", "whole number >= 1"),
        ("greedy:-1", "whole number >= 1"),
        ("maxwait:8", "is not one of"),
        ("maxwait:8/soon", "number of ms"),
        ("lifo:4", "is not one of"),
    ],
)
def test_bad_policies_are_named(spec: str, message: str) -> None:
    with pytest.raises(ServingConfigError, match=message):
        parse_policy(spec)


def test_poisson_arrivals_have_the_asked_mean_rate() -> None:
    times = parse_stream("poisson:200:1").arrivals(5000)
    assert times == sorted(times)
    assert (len(times) - 1) / times[-1] == pytest.approx(200.0, rel=0.05)
    assert parse_stream("poisson:200:2").arrivals(50) != times[:50]


def test_a_replayed_stream_starts_at_zero_and_keeps_its_gaps(tmp_path) -> None:
    path = tmp_path / "arrivals.csv"
    path.write_text("timestamp_s\n100.5\n100.5\n101.0\n103.0\n", encoding="utf-8")
    stream = parse_stream(f"replay:{path}")
    assert stream.arrivals(10) == [0.0, 0.0, 0.5, 2.5]
    assert stream.rate_rps == pytest.approx(3 / 2.5)


def test_a_replayed_stream_out_of_order_is_refused_with_its_line(tmp_path) -> None:
    path = tmp_path / "arrivals.txt"
    path.write_text("1.0\n2.0\n1.5\n", encoding="utf-8")
    with pytest.raises(ServingConfigError, match=r"arrivals.txt:3: timestamp 1.5 comes before"):
        parse_stream(f"replay:{path}")
    path.write_text("1.0\nsoon\n", encoding="utf-8")
    with pytest.raises(ServingConfigError, match=r"arrivals.txt:2: 'soon' is not a timestamp"):
        parse_stream(f"replay:{path}")
    path.write_text("1.0\n", encoding="utf-8")
    with pytest.raises(ServingConfigError, match="1 timestamp"):
        parse_stream(f"replay:{path}")


def test_bad_serving_settings_are_refused() -> None:
    with pytest.raises(ServingConfigError, match="requests must be >= 1"):
        ServeConfig(requests=0)
    with pytest.raises(ServingConfigError, match="max_s must be > 0"):
        ServeConfig(max_s=0)
