"""Distributed sessions: each rank meters its share, figures are summed once over ranks.

Two ranks run as two threads over one fake machine (a FakeMeter with a host
domain and two devices), joined by a fake collective: a barrier that sums.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from green_callbacks.analysis import read_run
from green_callbacks.core import keys
from green_callbacks.core.card import energy_card
from green_callbacks.core.session import CallbackConfig, Distributed, EnergySession
from green_callbacks.errors import DistributedError, DistributedWarning
from green_callbacks.meters.auto import Selection
from green_callbacks.meters.base import Domain, Reading
from green_callbacks.meters.replay import ReplayMeter
from green_callbacks.meters.share import RankShare, restrict
from green_callbacks.testing import FakeClock, FakeMeter

MACHINE_W = {"cpu:0": 30.0, "dram:0": 10.0, "gpu:0": 100.0, "gpu:1": 200.0}


class FakeSumCollective:
    """A fake of an all-reduce(sum) between threads: each caller gets the element-wise sum."""

    def __init__(self, world_size: int):
        self._barrier = threading.Barrier(world_size)
        self._lock = threading.Lock()
        self._parts: list[list[float]] = []
        self._result: list[float] = []

    def reduce_sum(self, values: list[float]) -> list[float]:
        with self._lock:
            self._parts.append(list(values))
        if self._barrier.wait() == 0:
            self._result = [sum(column) for column in zip(*self._parts)]
            self._parts = []
        self._barrier.wait()
        return list(self._result)


def run_ranks(world: int, body: Callable[[int, FakeSumCollective], Any]) -> list[Any]:
    collective = FakeSumCollective(world)
    with ThreadPoolExecutor(world) as pool:
        return list(pool.map(lambda rank: body(rank, collective), range(world)))


def advance_together(clock: FakeClock, rank: int, collective: FakeSumCollective, s: float) -> None:
    """Every rank is ready, then the shared fake clock moves once, then every rank goes on."""
    collective.reduce_sum([0.0])
    if rank == 0:
        clock.advance(s)
    collective.reduce_sum([0.0])


def session(clock: FakeClock, rank: int, collective: FakeSumCollective) -> EnergySession:
    share = RankShare(rank=rank, local_rank=rank, world_size=2)
    config = CallbackConfig(meters=[FakeMeter(MACHINE_W, clock=clock)])
    distributed = Distributed(share, collective.reduce_sum)
    return EnergySession(config, clock=clock, sample_interval_s=None, distributed=distributed)


def test_shares_cover_every_domain_exactly_once() -> None:
    meters = [restrict(Selection([FakeMeter(MACHINE_W)]), RankShare(r, r, 2)) for r in (0, 1)]
    names = [[d.name for m in s.meters for d in m.domains()] for s in meters]

    assert names == [["cpu:0", "dram:0", "gpu:0"], ["gpu:1"]]
    assert "metered by another rank" in meters[1].findings[0].reason


def test_a_rank_with_nothing_to_meter_closes_its_meter() -> None:
    meter = FakeMeter({"cpu:0": 30.0})
    selection = restrict(Selection([meter]), RankShare(rank=3, local_rank=1, world_size=4))

    assert selection.meters == [] and meter.closed
    assert not selection.findings[0].chosen


def test_device_index_overrides_the_local_rank() -> None:
    share = RankShare(rank=0, local_rank=0, world_size=2, device_index=1)
    kept = restrict(Selection([FakeMeter(MACHINE_W)]), share).meters[0].domains()

    assert [d.name for d in kept] == ["cpu:0", "dram:0", "gpu:1"]


def test_two_ranks_report_the_machine_once(clock: FakeClock) -> None:
    def rank_epoch(rank: int, collective: FakeSumCollective) -> dict[str, float]:
        s = session(clock, rank, collective).start()
        s.epoch_start("train")
        s.batch_end("train", samples=16)
        advance_together(clock, rank, collective, 2.0)
        metrics = s.epoch_end("train")
        s.stop()
        return metrics

    metrics = run_ranks(2, rank_epoch)

    machine_j = sum(MACHINE_W.values()) * 2.0  # 680 J, not twice that
    assert metrics[0] == metrics[1]  # every rank logs the same figures
    assert metrics[0][keys.epoch_j("train")] == pytest.approx(machine_j)
    assert metrics[0][keys.avg_power_w("train")] == pytest.approx(sum(MACHINE_W.values()))
    assert metrics[0][keys.j_per_sample("train")] == pytest.approx(machine_j / 32)
    assert metrics[0][keys.TOTAL_J] == pytest.approx(machine_j)


def test_resumed_job_continues_the_job_total(clock: FakeClock) -> None:
    def first_run(rank: int, collective: FakeSumCollective) -> dict[str, Any]:
        s = session(clock, rank, collective).start()
        advance_together(clock, rank, collective, 1.0)
        s.totals()
        state = s.state_dict()
        s.stop()
        return state

    saved = run_ranks(2, first_run)[0]  # the checkpoint holds rank 0's state

    def resumed(rank: int, collective: FakeSumCollective) -> float:
        s = session(clock, rank, collective).start()
        s.load_state_dict(saved)  # every rank gets rank 0's state
        total = s.totals()[keys.TOTAL_J]
        s.stop()
        return total

    totals = run_ranks(2, resumed)
    assert totals == pytest.approx([sum(MACHINE_W.values()) * 1.0] * 2)


def test_two_ranks_that_both_think_they_are_local_rank_0_count_the_host_once(
    clock: FakeClock,
) -> None:
    """A launcher that leaves LOCAL_RANK unset: both ranks claim the host and gpu:0."""

    def rank_epoch(rank: int, collective: FakeSumCollective) -> dict[str, float]:
        share = RankShare(rank=rank, local_rank=0, world_size=2)
        config = CallbackConfig(meters=[FakeMeter(MACHINE_W, clock=clock)])
        distributed = Distributed(share, collective.reduce_sum)
        s = EnergySession(config, clock=clock, sample_interval_s=None, distributed=distributed)
        s.start()
        s.epoch_start("train")
        advance_together(clock, rank, collective, 2.0)
        metrics = s.epoch_end("train")
        s.stop()
        return metrics

    with pytest.warns(
        DistributedWarning, match=r"ranks 0, 1 all meter cpu:0, dram:0, gpu:0 on .* counted once"
    ):
        metrics = run_ranks(2, rank_epoch)

    # rank 0 keeps cpu:0, dram:0 and gpu:0; rank 1 drops them all (gpu:1 nobody claimed)
    kept_w = MACHINE_W["cpu:0"] + MACHINE_W["dram:0"] + MACHINE_W["gpu:0"]
    assert metrics[0] == metrics[1]
    assert metrics[0][keys.avg_power_w("train")] == kept_w  # 140 W, not 280 W


def test_replayed_traces_are_claims_of_their_own() -> None:
    """Each "node" of a one-machine test replays its own trace: no overlap, nothing dropped."""
    collective = FakeSumCollective(2)

    def kept(rank: int) -> list[str]:
        meter = ReplayMeter({"cpu:0": ("power", [0.0, 60.0], [20.0, 20.0])}, origin=f"n{rank}")
        share = RankShare(rank=rank, local_rank=0, world_size=2)
        selection = restrict(Selection([meter]), share, collective.reduce_sum, host="one-host")
        return [d.name for m in selection.meters for d in m.domains()]

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(kept, range(2))) == [["cpu:0"], ["cpu:0"]]


def test_a_collective_that_fails_is_named_and_each_process_reports_its_share(
    clock: FakeClock, tmp_path: Path
) -> None:
    def no_backend(values: list[float]) -> list[float]:
        raise RuntimeError("No backend type associated with device type cpu")

    share = RankShare(rank=0, local_rank=0, world_size=2)
    config = CallbackConfig(meters=[FakeMeter(MACHINE_W, clock=clock)],
                            summary_path=tmp_path / "summary.json")  # fmt: skip
    s = EnergySession(config, clock=clock, sample_interval_s=None,
                      distributed=Distributed(share, no_backend))  # fmt: skip
    with pytest.warns(DistributedWarning, match="cannot sum their figures .*No backend type"):
        s.start()
    s.epoch_start("train")
    clock.advance(2.0)
    metrics = s.epoch_end("train")
    summary = s.stop()

    own_w = MACHINE_W["cpu:0"] + MACHINE_W["dram:0"] + MACHINE_W["gpu:0"]
    assert metrics[keys.avg_power_w("train")] == own_w and summary["distributed"]["summed"] is False
    assert "this process's share only" in summary["notes"][-1]

    strict = EnergySession(
        CallbackConfig(meters=[FakeMeter(MACHINE_W, clock=clock)], strict=True),
        clock=clock, sample_interval_s=None, distributed=Distributed(share, no_backend),
    )  # fmt: skip
    with pytest.raises(DistributedError, match="strict mode: .*gloo on the CPU"):
        strict.start()


def test_a_job_resumed_twice_and_then_by_one_process_keeps_every_joule(clock: FakeClock) -> None:
    """Rank 0's state carries the other ranks' energy through every resume."""
    states: list[dict[str, Any]] = [{}]

    def run(rank: int, collective: FakeSumCollective) -> float:
        s = session(clock, rank, collective).start()
        s.load_state_dict(states[-1])
        advance_together(clock, rank, collective, 1.0)
        total = s.totals()[keys.TOTAL_J]
        state = s.state_dict()
        s.stop()
        if rank == 0:
            states.append(state)
        return total

    machine_w = sum(MACHINE_W.values())
    assert run_ranks(2, run) == [machine_w] * 2
    assert run_ranks(2, run) == [2 * machine_w] * 2
    assert run_ranks(2, run) == [3 * machine_w] * 2

    alone = EnergySession(CallbackConfig(meters=[FakeMeter({"cpu:0": 30.0}, clock=clock)]),
                          clock=clock, sample_interval_s=None).start()  # fmt: skip
    alone.load_state_dict(states[-1])
    clock.advance(1.0)
    assert alone.totals()[keys.TOTAL_J] == 3 * machine_w + 30.0
    again = EnergySession(CallbackConfig(meters=[FakeMeter({"cpu:0": 30.0}, clock=clock)]),
                          clock=clock, sample_interval_s=None).start()  # fmt: skip
    again.load_state_dict(alone.state_dict())  # a second single-process resume keeps it too
    assert again.totals()[keys.TOTAL_J] == 3 * machine_w + 30.0


class OwnGpu:
    """A GPU meter of a rank given one GPU (CUDA_VISIBLE_DEVICES, or a container that sees only
    its own): it is gpu:0, NVML index 0, in every rank; only its UUID tells it apart."""

    name = "nvml"
    max_poll_interval_s = None

    def __init__(self, physical: int) -> None:
        detail = f"NVIDIA H100 (NVML index 0, GPU-{physical}aaa)"
        self._domains = (Domain("gpu:0", "measured", "nvml", "energy-counter", detail=detail),)

    def domains(self) -> tuple[Domain, ...]:
        return self._domains

    def read(self) -> Reading:
        return Reading(0.0, {"gpu:0": 0.0})

    def close(self) -> None:
        pass


def test_ranks_each_given_their_own_gpu_as_gpu_0_keep_it(recwarn: pytest.WarningsRecorder) -> None:
    collective = FakeSumCollective(2)

    def kept(rank: int) -> list[str]:
        share = RankShare(rank=rank, local_rank=rank, world_size=2, device_index=0)
        selection = restrict(Selection([OwnGpu(rank)]), share, collective.reduce_sum, "host")
        return [d.detail for m in selection.meters for d in m.domains()]

    with ThreadPoolExecutor(2) as pool:
        details = list(pool.map(kept, range(2)))

    assert details == [
        ["NVIDIA H100 (NVML index 0, GPU-0aaa)"],
        ["NVIDIA H100 (NVML index 0, GPU-1aaa)"],
    ]
    assert not [w for w in recwarn if issubclass(w.category, DistributedWarning)]


def test_the_model_card_and_the_report_give_the_job_not_rank_0s_share(
    clock: FakeClock, tmp_path: Path
) -> None:
    def run(rank: int, collective: FakeSumCollective) -> dict[str, Any]:
        share = RankShare(rank=rank, local_rank=rank, world_size=2)
        meter = FakeMeter(MACHINE_W, clock=clock)
        config = CallbackConfig(meters=[meter], carbon_intensity_g_per_kwh=360.0)
        distributed = Distributed(share, collective.reduce_sum)
        s = EnergySession(config, clock=clock, sample_interval_s=None, distributed=distributed)
        s.start()
        advance_together(clock, rank, collective, 2.0)
        s.totals()  # the last point every process sums: the last logged energy/total_j
        return s.stop()

    rank0 = run_ranks(2, run)[0]

    machine_w = sum(MACHINE_W.values())  # 340 W: rank 0 metered 140 W of it
    assert rank0["totals"]["energy_j"] == 140.0 * 2 and rank0["distributed"]["processes"] == 2
    card = energy_card(rank0)
    assert "| training energy | 0.000189 kWh (680 J) |" in card
    assert f"| average power | {machine_w:g} W |" in card
    assert "| processes | 2, each metering its share, summed |" in card
    assert "| carbon | 0.068 gCO2e |" in card  # 680 J = 1/5294 kWh at 360 g/kWh
    (tmp_path / "summary.json").write_text(json.dumps(rank0))
    report = read_run(tmp_path / "summary.json")
    assert report.total_j == 680.0 and "a job of 2 processes" in report.notes[0]


def test_every_rank_writes_into_the_version_rank_0_claimed(
    clock: FakeClock, tmp_path: Path
) -> None:
    root = tmp_path / "run"
    (root / "version_3").mkdir(parents=True)  # an earlier run

    def rank_run(rank: int, collective: FakeSumCollective) -> tuple[Path | None, bool]:
        config = CallbackConfig(meters=[FakeMeter(MACHINE_W, clock=clock)], run_dir=root)
        distributed = Distributed(RankShare(rank=rank, local_rank=rank, world_size=2),
                                  collective.reduce_sum)  # fmt: skip
        s = EnergySession(config, clock=clock, sample_interval_s=None, distributed=distributed)
        s.start()
        s.stop()
        folder = None if s.folder is None else s.folder.root
        return folder, (root / "version_4" / f"trace.jsonl.rank{rank}").is_file()

    assert run_ranks(2, rank_run) == [(root / "version_4", True)] * 2
    assert [p.name for p in sorted(root.iterdir())] == ["version_3", "version_4"]  # one claim
