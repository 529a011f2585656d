"""EnergyEarlyStopping, EnergyCheckpoint and OOMGuard in real fits of Keras 3 (this
process's backend) and tf_keras (Keras 2): every case runs on both.

Energy is made deterministic with a FakeMeter (100 W) on a FakeClock that a
callback listed first advances by 1 s per training batch: 100 J per batch,
400 J per epoch. Out-of-memory faults are real out-of-memory exceptions
raised from inside a layer, of the type the backend's allocator raises.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras", reason="needs the 'keras' extra")
np = pytest.importorskip("numpy")

from green_callbacks.core import keys  # noqa: E402
from green_callbacks.errors import (  # noqa: E402
    CheckpointLoadError,
    EnergyCallbackMissingError,
    FrameworkAPIError,
    OutputFailureWarning,
)
from green_callbacks.policies import (  # noqa: E402
    OOMFloorError,
    OOMGuardConfigError,
    SaveReason,
    StopReason,
)
from tests.keras.fit_helpers import BATCHES_PER_EPOCH, Kit, data, kit  # noqa: E402


@pytest.fixture(params=["keras", "tf_keras"])
def k(request: pytest.FixtureRequest) -> Kit:
    """Each Keras in turn (tf_keras where the 'tfmot' extra is installed)."""
    pytest.importorskip(request.param)
    return kit(request.param)


# -- EnergyEarlyStopping ---------------------------------------------------


def test_budget_stops_before_an_epoch_that_would_overrun(k: Kit, tmp_path: Path) -> None:
    meter, clock = k.energy()
    stopper = k.green.EnergyEarlyStopping(monitor="val_acc", mode="max", budget_j=1000.0)
    table = k.k.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    history = k.fit(k.model(), [k.Ticks(meter, clock), meter, k.Scripted([0.5]), stopper, table])

    # 400 J per epoch: after 800 J a third epoch would reach 1200 J > 1000 J.
    assert history.epoch == [0, 1]
    assert history.history[keys.TOTAL_J][-1] == pytest.approx(800.0)
    assert stopper.decision is not None and stopper.decision.reason is StopReason.BUDGET
    assert history.history[keys.STOP_SAVED_ESTIMATE_J] == [0.0, pytest.approx(8 * 400.0)]
    # a stop after the first epoch still reaches CSVLogger, whose columns the first epoch fixed
    with open(tmp_path / "log.csv", newline="") as handle:
        saved = [float(row[keys.STOP_SAVED_ESTIMATE_J]) for row in csv.DictReader(handle)]
    assert saved == [0.0, pytest.approx(8 * 400.0)]


@pytest.mark.parametrize("verbose", [1, "auto"])
def test_the_progress_bar_gets_energy_so_far_and_power_every_batch(k: Kit, verbose: Any) -> None:
    meter, clock = k.energy()
    seen: list[dict[str, float]] = []
    peek = k.k.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs))
    k.fit(k.model(), [k.Ticks(meter, clock), meter, peek], epochs=2, verbose=verbose)

    # 1 s (100 J) per batch: the running total and, once sampled, the epoch's 100 W
    assert [round(logs["energy_j"]) for logs in seen] == [100 * (i + 1) for i in range(8)]
    assert [logs["power_w"] for logs in seen][4:] == [pytest.approx(100.0)] * 4


@pytest.mark.parametrize(("verbose", "progress_bar"), [(1, False), (0, True), (2, True)])
def test_no_bar_figures_without_a_bar(k: Kit, verbose: int, progress_bar: bool) -> None:
    """Turned off, or a fit that shows no bar (verbose 0, or 2: a line an epoch)."""
    meter, clock = k.energy(progress_bar=progress_bar)
    seen: list[dict[str, float]] = []
    peek = k.k.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs))
    k.fit(k.model(), [k.Ticks(meter, clock), meter, peek], epochs=1, verbose=verbose)

    assert len(seen) == 4
    assert not {"energy_j", "power_w"} & set(seen[-1])
    assert keys.step_j("train") in seen[-1]  # the step figures are there all the same


def test_target_stops_and_best_weights_come_back(k: Kit) -> None:
    meter, clock = k.energy()
    net = k.model()
    snapshots: list[list[np.ndarray]] = []
    keep = k.k.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(net.get_weights())
    )
    stopper = k.green.EnergyEarlyStopping(
        monitor="val_acc", mode="max", min_gain_per_kj=0.05, patience=2, restore_best_weights=True
    )
    accuracies = [0.5, 0.8, 0.85, 0.79, 0.80, 0.81]
    history = k.fit(net, [k.Ticks(meter, clock), meter, k.Scripted(accuracies), keep, stopper])

    assert history.epoch == [0, 1, 2, 3, 4]
    assert stopper.decision is not None
    assert stopper.decision.reason is StopReason.DIMINISHING_RETURNS
    for now, best in zip(net.get_weights(), snapshots[2], strict=True):  # the 0.85 epoch
        np.testing.assert_array_equal(now, best)


def test_energy_early_stopping_needs_the_energy_callback_first(k: Kit) -> None:
    stopper = k.green.EnergyEarlyStopping(monitor="val_acc", mode="max", target=0.9)
    with pytest.raises(EnergyCallbackMissingError, match=r"EnergyCallback\(\), EnergyEarly"):
        k.fit(k.model(), [k.Scripted([0.5]), stopper], epochs=1)


# -- EnergyCheckpoint ------------------------------------------------------


def test_signal_saves_stops_and_the_next_fit_resumes_with_its_energy(
    k: Kit, tmp_path: Path
) -> None:
    meter, clock = k.energy()
    net = k.model()
    saver = k.green.EnergyCheckpoint(tmp_path / "backup", every_kj=1000.0, signals=("SIGUSR1",))
    stopper = k.green.EnergyEarlyStopping(monitor="val_acc", mode="max", target=2.0)  # never met
    history = k.fit(
        net,
        [k.Ticks(meter, clock, signal_at=6), meter, k.Scripted([0.5]), saver, stopper],
        epochs=3,
    )

    # batch 6 is the 2nd of epoch 1: saved there, stopped, handler given back
    assert saver.last_decision is not None and saver.last_decision.reason is SaveReason.SIGNAL
    assert history.epoch == [0, 1] and meter.summary is not None
    assert meter.summary["totals"]["energy_j"] == 600.0
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    pointer = json.loads((tmp_path / "backup" / "latest.json").read_text())
    assert pointer["folder"].endswith("-epoch=1-batch=2")
    # Keras tells callbacks of no saves, but this one was EnergyCheckpoint's: recorded, metered
    [save] = meter.summary["facts"]["checkpoints"]
    assert save["energy_j"] == 0.0  # metered on the fake clock, which the save did not move
    at_save = [*net.get_weights(), *k.numpy(net.optimizer.variables)]

    # a new process would build everything again: so do we
    meter2, clock2 = k.energy()
    net2 = k.model()
    saver2 = k.green.EnergyCheckpoint(tmp_path / "backup", every_kj=1000.0, signals=("SIGUSR1",))
    stopper2 = k.green.EnergyEarlyStopping(monitor="val_acc", mode="max", target=2.0)
    restored: list[list[np.ndarray]] = []  # after the restore, before the first step

    def look(logs: Any) -> None:
        restored.append([*net2.get_weights(), *k.numpy(net2.optimizer.variables)])

    peek = k.k.callbacks.LambdaCallback(on_train_begin=look)
    callbacks = [k.Ticks(meter2, clock2), meter2, k.Scripted([0.5]), saver2, stopper2, peek]
    history2 = k.fit(net2, callbacks, epochs=3)

    assert saver2.resumed_from is not None
    for got, want in zip(restored[0], at_save, strict=True):  # weights and Adam's moments
        np.testing.assert_array_equal(got, want)
    assert history2.epoch == [1, 2]  # Keras resumes at the start of the interrupted epoch
    # the total continues: 600 J before, 8 batches x 100 J after
    assert history2.history[keys.TOTAL_J][-1] == 600.0 + 800.0
    assert saver2.planner.saves == 1  # the signal save, counted in the state it wrote
    # the stopping history travelled in the backup: epoch 0 before, epochs 1 and 2 after
    assert stopper2.policy.epochs == 3 and stopper2.policy.state_dict()["costs_j"] == [400.0] * 3
    assert not (tmp_path / "backup").exists()  # finished: the next run starts afresh
    # and a later fit of the same model starts where it is told, not at the resumed epoch
    assert k.fit(net2, [k.energy()[0]], epochs=2).epoch == [0, 1]


def test_every_kj_saves_atomically_and_keeps_the_last_two(k: Kit, tmp_path: Path) -> None:
    meter, clock = k.energy()
    saver = k.green.EnergyCheckpoint(
        tmp_path / "backup", every_kj=0.3, keep_last=2, delete_on_finish=False
    )
    k.fit(k.model(), [k.Ticks(meter, clock), meter, saver], epochs=3)

    folders = sorted(p.name for p in (tmp_path / "backup").iterdir() if p.is_dir())
    assert saver.planner.saves == 4  # 1200 J in steps of 300 J
    assert len(folders) == 2 and not [f for f in folders if f.startswith(".")]
    pointer = json.loads((tmp_path / "backup" / "latest.json").read_text())
    assert pointer["folder"] == folders[-1]
    state = json.loads((tmp_path / "backup" / folders[-1] / "state.json").read_text())
    assert state["version"] == 1 and state["parts"]["checkpoint"]["saves"] == 4


def test_a_corrupt_newest_backup_resumes_from_the_one_before(k: Kit, tmp_path: Path) -> None:
    meter, clock = k.energy()
    saver = k.green.EnergyCheckpoint(
        tmp_path / "backup", every_kj=0.3, keep_last=2, delete_on_finish=False
    )
    k.fit(k.model(), [k.Ticks(meter, clock), meter, saver], epochs=3)
    older, newest = sorted(p for p in (tmp_path / "backup").iterdir() if p.is_dir())
    weights = k.tear(newest)
    weights.write_bytes(weights.read_bytes()[:100])  # torn by a full disk or a bad copy

    meter2, clock2 = k.energy()
    again = k.green.EnergyCheckpoint(tmp_path / "backup", every_kj=0.3, delete_on_finish=False)
    with pytest.warns(OutputFailureWarning, match=f"resuming from .*{older.name}.*passed over"):
        k.fit(k.model(), [k.Ticks(meter2, clock2), meter2, again], epochs=3)
    assert again.resumed_from == older

    for folder in (p for p in (tmp_path / "backup").iterdir() if p.is_dir()):
        (folder / "state.json").write_text("{")  # nothing intact left
    meter3, clock3 = k.energy()
    with pytest.raises(CheckpointLoadError, match="no kept checkpoint can be resumed from"):
        k.fit(
            k.model(),
            [k.Ticks(meter3, clock3), meter3, k.green.EnergyCheckpoint(tmp_path / "backup")],
        )


# -- OOMGuard --------------------------------------------------------------


def test_oom_mid_training_is_survived_with_a_smaller_batch(k: Kit, tmp_path: Path) -> None:
    meter, clock = k.energy(run_dir=tmp_path / "run")
    fault = k.FaultyMemory(fits=4, after=6)  # 16 fits for 6 steps (1.5 epochs), then only 4
    net = k.model(fault)
    guard = k.green.OOMGuard(preflight=False, dirpath=tmp_path / "oom")
    x, y = data()
    history = guard.fit(net, x, y, batch_size=16, epochs=3, verbose=0,
                        callbacks=[k.Ticks(meter, clock), meter])  # fmt: skip

    assert [(e.batch_size, e.new_batch_size) for e in guard.events] == [(16, 8), (8, 4)]
    assert all(e.epoch == 1 and e.step == 6 for e in guard.events)
    assert guard.batch_size == 4 and set(fault.sizes[6:]) == {4}
    # nothing lost: epoch 0 done once at 16, epochs 1 and 2 done at 4, one history
    assert history.epoch == [0, 1, 2]
    assert history.history[keys.OOM_BATCH_SIZE] == [4, 4]
    for event in guard.events:
        assert event.checkpoint is not None and Path(event.checkpoint).exists()
    # the energy total counts every batch run, the ones of the interrupted epoch included
    steps = len(fault.sizes)
    assert history.history[keys.TOTAL_J][-1] == pytest.approx(100.0 * steps)
    # the last run's summary holds the events, so the advisor can name them (P7)
    assert meter.summary is not None
    assert [e["new_batch_size"] for e in meter.summary["facts"]["oom_events"]] == [8, 4]
    # the retries are the same run: one run folder, its summary the last run's
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["version_0"]
    assert meter.run_folder == tmp_path / "run" / "version_0"


def test_preflight_shrinks_before_training_and_leaves_no_trace(k: Kit) -> None:
    fault = k.FaultyMemory(fits=20)
    net = k.model(fault)
    before = net.get_weights()
    guard = k.green.OOMGuard()
    first: list[list[np.ndarray]] = []
    peek = k.k.callbacks.LambdaCallback(on_train_begin=lambda logs: first.append(net.get_weights()))
    x, y = data()
    guard.fit(net, x, y, batch_size=64, epochs=1, verbose=0, callbacks=[peek])

    assert [(e.epoch, e.batch_size, e.new_batch_size) for e in guard.events] == [
        (-1, 64, 32), (-1, 32, 16),
    ]  # fmt: skip
    assert set(fault.sizes) == {16} and guard.preflight_peak_bytes
    for got, want in zip(first[0], before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_oom_at_the_floor_is_a_clear_error(k: Kit, tmp_path: Path) -> None:
    guard = k.green.OOMGuard(preflight=False, min_batch_size=8, dirpath=tmp_path)
    x, y = data()
    with pytest.raises(OOMFloorError, match="min_batch_size=8"):
        guard.fit(k.model(k.FaultyMemory(fits=2)), x, y, batch_size=16, epochs=2, verbose=0)
    assert [(e.batch_size, e.new_batch_size) for e in guard.events] == [(16, 8), (8, None)]


def test_datasets_with_a_fixed_batch_size_are_refused_clearly(k: Kit) -> None:
    base = k.k.utils.PyDataset if k.name == "keras" else k.k.utils.Sequence

    class Batches(base):  # type: ignore[misc, valid-type]
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> Any:
            return data(16)

    with pytest.raises(OOMGuardConfigError, match="function that builds the dataset"):
        k.green.OOMGuard().fit(k.model(), Batches(), epochs=1)


def test_the_former_backup_dir_still_works_with_a_warning(k: Kit, tmp_path: Path) -> None:
    renamed = r"EnergyCheckpoint\(backup_dir=\.\.\.\) is renamed dirpath="
    with pytest.warns(DeprecationWarning, match=renamed):
        saver = k.green.EnergyCheckpoint(backup_dir=tmp_path / "backup")
    assert saver.dirpath == tmp_path / "backup"


def test_a_backup_that_cannot_be_written_warns_and_training_goes_on(k: Kit, tmp_path: Path) -> None:
    (tmp_path / "full").write_text("a file where the backups should go")
    meter, clock = k.energy()
    saver = k.green.EnergyCheckpoint(tmp_path / "full", every_kj=0.25, delete_on_finish=False)
    with pytest.warns(OutputFailureWarning, match="could not save"):
        history = k.fit(k.model(), [k.Ticks(meter, clock), meter, saver], epochs=2)

    # 100 J a batch: every check from the 3rd batch on (300 J >= 250 J) tries again, the
    # 6 later batches and the 2 epoch ends; nothing counted as saved
    assert history.epoch == [0, 1] and saver.planner.saves == 0
    assert saver.schedule.failures == (2 * BATCHES_PER_EPOCH - 2) + 2


def test_a_release_without_the_internal_resume_relies_on_is_named(k: Kit) -> None:
    flavour = k.green.EnergyCheckpoint.flavour
    with pytest.raises(FrameworkAPIError, match=rf"^{flavour.library} [\d.]+ models have no '_"):
        flavour.set_initial_epoch(object(), 3)  # a model class that changed its internals
