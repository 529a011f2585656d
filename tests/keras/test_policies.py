"""EnergyEarlyStopping, EnergyCheckpoint and OOMGuard in real Keras 3 fits (every backend).

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

keras = pytest.importorskip("keras", reason="needs the 'keras' extra")
np = pytest.importorskip("numpy")

from green_callbacks.core import keys  # noqa: E402
from green_callbacks.errors import (  # noqa: E402
    CheckpointLoadError,
    EnergyCallbackMissingError,
    OutputFailureWarning,
)
from green_callbacks.keras import (  # noqa: E402
    EnergyCallback,
    EnergyCheckpoint,
    EnergyEarlyStopping,
    OOMGuard,
)
from green_callbacks.policies import (  # noqa: E402
    OOMFloorError,
    OOMGuardConfigError,
    SaveReason,
    StopReason,
)
from green_callbacks.testing import FakeClock, fake_metered  # noqa: E402
from tests.keras.fit_helpers import (  # noqa: E402
    FaultyMemoryHooks,
    ScriptedHooks,
    TicksHooks,
    tensorflow_out_of_memory,
)

BATCH = 16
BATCHES_PER_EPOCH = 4


class Ticks(TicksHooks, keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = TicksHooks.__doc__


class Scripted(ScriptedHooks, keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = ScriptedHooks.__doc__


def out_of_memory(message: str) -> Exception:
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.OutOfMemoryError(f"CUDA out of memory. {message}")
    if backend == "tensorflow":
        return tensorflow_out_of_memory(message)
    return MemoryError(message)


class FaultyMemory(FaultyMemoryHooks, keras.layers.Layer):  # type: ignore[misc]
    __doc__ = FaultyMemoryHooks.__doc__
    out_of_memory = staticmethod(out_of_memory)


def model(fault: FaultyMemory | None = None) -> keras.Model:
    layers = [keras.Input((8,))]
    if fault is not None:
        layers.append(fault)
    layers += [keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]
    net = keras.Sequential(layers)
    net.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=fault is not None,
    )
    return net


def data(samples: int = BATCH * BATCHES_PER_EPOCH) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(samples, 8)).astype("float32"), rng.integers(0, 2, size=samples)


def energy() -> tuple[EnergyCallback, FakeClock]:
    return fake_metered(EnergyCallback)


def fit(net: keras.Model, callbacks: list[Any], epochs: int = 10) -> Any:
    x, y = data()
    return net.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks)


# -- EnergyEarlyStopping ---------------------------------------------------


def test_budget_stops_before_an_epoch_that_would_overrun(tmp_path: Path) -> None:
    meter, clock = energy()
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", budget_j=1000.0)
    table = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    history = fit(model(), [Ticks(meter, clock), meter, Scripted([0.5]), stopper, table])

    # 400 J per epoch: after 800 J a third epoch would reach 1200 J > 1000 J.
    assert history.epoch == [0, 1]
    assert history.history[keys.TOTAL_J][-1] == pytest.approx(800.0)
    assert stopper.decision is not None and stopper.decision.reason is StopReason.BUDGET
    assert history.history[keys.STOP_SAVED_ESTIMATE_J] == [0.0, pytest.approx(8 * 400.0)]
    # a stop after the first epoch still reaches CSVLogger, whose columns the first epoch fixed
    with open(tmp_path / "log.csv", newline="") as handle:
        saved = [float(row[keys.STOP_SAVED_ESTIMATE_J]) for row in csv.DictReader(handle)]
    assert saved == [0.0, pytest.approx(8 * 400.0)]


def test_the_progress_bar_gets_energy_so_far_and_power_every_batch() -> None:
    meter, clock = energy()
    seen: list[dict[str, float]] = []
    peek = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs))
    fit(model(), [Ticks(meter, clock), meter, peek], epochs=2)

    # 1 s (100 J) per batch: the running total and, once sampled, the epoch's 100 W
    assert [round(logs["energy_j"]) for logs in seen] == [100 * (i + 1) for i in range(8)]
    assert [logs["power_w"] for logs in seen][4:] == [pytest.approx(100.0)] * 4

    meter, clock = fake_metered(EnergyCallback, progress_bar=False)
    seen.clear()
    fit(model(), [Ticks(meter, clock), meter, peek], epochs=1)
    assert not {"energy_j", "power_w"} & set(seen[-1])


def test_target_stops_and_best_weights_come_back() -> None:
    meter, clock = energy()
    net = model()
    snapshots: list[list[np.ndarray]] = []
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(net.get_weights())
    )
    stopper = EnergyEarlyStopping(
        monitor="val_acc", mode="max", min_gain_per_kj=0.05, patience=2, restore_best_weights=True
    )
    accuracies = [0.5, 0.8, 0.85, 0.79, 0.80, 0.81]
    history = fit(net, [Ticks(meter, clock), meter, Scripted(accuracies), keep, stopper])

    assert history.epoch == [0, 1, 2, 3, 4]
    assert stopper.decision is not None
    assert stopper.decision.reason is StopReason.DIMINISHING_RETURNS
    for now, best in zip(net.get_weights(), snapshots[2], strict=True):  # the 0.85 epoch
        np.testing.assert_array_equal(now, best)


def test_energy_early_stopping_needs_the_energy_callback_first() -> None:
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", target=0.9)
    with pytest.raises(EnergyCallbackMissingError, match=r"EnergyCallback\(\), EnergyEarly"):
        fit(model(), [Scripted([0.5]), stopper], epochs=1)


# -- EnergyCheckpoint ------------------------------------------------------


def test_signal_saves_stops_and_the_next_fit_resumes_with_its_energy(tmp_path: Path) -> None:
    meter, clock = energy()
    net = model()
    saver = EnergyCheckpoint(tmp_path / "backup", every_kj=1000.0, signals=("SIGUSR1",))
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", target=2.0)  # never met
    history = fit(
        net, [Ticks(meter, clock, signal_at=6), meter, Scripted([0.5]), saver, stopper], epochs=3
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
    weights_at_save = net.get_weights()

    # a new process would build everything again: so do we
    meter2, clock2 = energy()
    net2 = model()
    saver2 = EnergyCheckpoint(tmp_path / "backup", every_kj=1000.0, signals=("SIGUSR1",))
    stopper2 = EnergyEarlyStopping(monitor="val_acc", mode="max", target=2.0)
    restored: list[list[np.ndarray]] = []
    peek = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: restored.append(net2.get_weights())
    )
    callbacks = [Ticks(meter2, clock2), meter2, Scripted([0.5]), saver2, stopper2, peek]
    history2 = fit(net2, callbacks, epochs=3)

    assert saver2.resumed_from is not None
    for got, want in zip(restored[0], weights_at_save, strict=True):
        np.testing.assert_array_equal(got, want)
    assert history2.epoch == [1, 2]  # Keras resumes at the start of the interrupted epoch
    # the total continues: 600 J before, 8 batches x 100 J after
    assert history2.history[keys.TOTAL_J][-1] == 600.0 + 800.0
    assert saver2.planner.saves == 1  # the signal save, counted in the state it wrote
    # the stopping history travelled in the backup: epoch 0 before, epochs 1 and 2 after
    assert stopper2.policy.epochs == 3 and stopper2.policy.state_dict()["costs_j"] == [400.0] * 3
    assert not (tmp_path / "backup").exists()  # finished: the next run starts afresh


def test_every_kj_saves_atomically_and_keeps_the_last_two(tmp_path: Path) -> None:
    meter, clock = energy()
    saver = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3, keep_last=2, delete_on_finish=False)
    fit(model(), [Ticks(meter, clock), meter, saver], epochs=3)

    folders = sorted(p.name for p in (tmp_path / "backup").iterdir() if p.is_dir())
    assert saver.planner.saves == 4  # 1200 J in steps of 300 J
    assert len(folders) == 2 and not [f for f in folders if f.startswith(".")]
    pointer = json.loads((tmp_path / "backup" / "latest.json").read_text())
    assert pointer["folder"] == folders[-1]
    state = json.loads((tmp_path / "backup" / folders[-1] / "state.json").read_text())
    assert state["version"] == 1 and state["parts"]["checkpoint"]["saves"] == 4


def test_a_corrupt_newest_backup_resumes_from_the_one_before(tmp_path: Path) -> None:
    meter, clock = energy()
    saver = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3, keep_last=2, delete_on_finish=False)
    fit(model(), [Ticks(meter, clock), meter, saver], epochs=3)
    older, newest = sorted(p for p in (tmp_path / "backup").iterdir() if p.is_dir())
    weights = newest / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])  # torn by a full disk or a bad copy

    meter2, clock2 = energy()
    again = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3, delete_on_finish=False)
    with pytest.warns(OutputFailureWarning, match=f"resuming from .*{older.name}.*passed over"):
        fit(model(), [Ticks(meter2, clock2), meter2, again], epochs=3)
    assert again.resumed_from == older

    for folder in (p for p in (tmp_path / "backup").iterdir() if p.is_dir()):
        (folder / "state.json").write_text("{")  # nothing intact left
    meter3, clock3 = energy()
    with pytest.raises(CheckpointLoadError, match="no kept checkpoint can be resumed from"):
        fit(model(), [Ticks(meter3, clock3), meter3, EnergyCheckpoint(tmp_path / "backup")])


# -- OOMGuard --------------------------------------------------------------


def test_oom_mid_training_is_survived_with_a_smaller_batch(tmp_path: Path) -> None:
    meter, clock = energy()
    fault = FaultyMemory(fits=4, after=6)  # 16 fits for 6 steps (1.5 epochs), then only 4
    net = model(fault)
    guard = OOMGuard(preflight=False, dirpath=tmp_path / "oom")
    x, y = data()
    history = guard.fit(net, x, y, batch_size=16, epochs=3, verbose=0,
                        callbacks=[Ticks(meter, clock), meter])  # fmt: skip

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


def test_preflight_shrinks_before_training_and_leaves_no_trace() -> None:
    fault = FaultyMemory(fits=20)
    net = model(fault)
    before = net.get_weights()
    guard = OOMGuard()
    first: list[list[np.ndarray]] = []
    peek = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: first.append(net.get_weights())
    )
    x, y = data()
    guard.fit(net, x, y, batch_size=64, epochs=1, verbose=0, callbacks=[peek])

    assert [(e.epoch, e.batch_size, e.new_batch_size) for e in guard.events] == [
        (-1, 64, 32), (-1, 32, 16),
    ]  # fmt: skip
    assert set(fault.sizes) == {16} and guard.preflight_peak_bytes
    for got, want in zip(first[0], before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_oom_at_the_floor_is_a_clear_error(tmp_path: Path) -> None:
    guard = OOMGuard(preflight=False, min_batch_size=8, dirpath=tmp_path)
    x, y = data()
    with pytest.raises(OOMFloorError, match="min_batch_size=8"):
        guard.fit(model(FaultyMemory(fits=2)), x, y, batch_size=16, epochs=2, verbose=0)
    assert [(e.batch_size, e.new_batch_size) for e in guard.events] == [(16, 8), (8, None)]


def test_datasets_with_a_fixed_batch_size_are_refused_clearly() -> None:
    class Batches(keras.utils.PyDataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> Any:
            return data(16)

    with pytest.raises(OOMGuardConfigError, match="function that builds the dataset"):
        OOMGuard().fit(model(), Batches(), epochs=1)


def test_the_former_backup_dir_still_works_with_a_warning(tmp_path: Path) -> None:
    renamed = r"EnergyCheckpoint\(backup_dir=\.\.\.\) is renamed dirpath="
    with pytest.warns(DeprecationWarning, match=renamed):
        saver = EnergyCheckpoint(backup_dir=tmp_path / "backup")
    assert saver.dirpath == tmp_path / "backup"


def test_a_backup_that_cannot_be_written_warns_and_training_goes_on(tmp_path: Path) -> None:
    (tmp_path / "full").write_text("a file where the backups should go")
    meter, clock = energy()
    saver = EnergyCheckpoint(tmp_path / "full", every_kj=0.25, delete_on_finish=False)
    with pytest.warns(OutputFailureWarning, match="could not save"):
        history = fit(model(), [Ticks(meter, clock), meter, saver], epochs=2)

    # 100 J a batch: every check from the 3rd batch on (300 J >= 250 J) tries again, the
    # 6 later batches and the 2 epoch ends; nothing counted as saved
    assert history.epoch == [0, 1] and saver.planner.saves == 0
    assert saver.schedule.failures == (2 * BATCHES_PER_EPOCH - 2) + 2
