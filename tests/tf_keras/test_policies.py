"""EnergyEarlyStopping, EnergyCheckpoint and OOMGuard in real tf_keras (Keras 2) fits.

The same deterministic energy as the Keras 3 tests: a FakeMeter (100 W) on a
FakeClock that a callback listed first advances by 1 s per training batch,
100 J per batch, 400 J per epoch; out-of-memory faults are TensorFlow's own
``ResourceExhaustedError`` raised from inside a layer.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras")

from green_callbacks.core import keys  # noqa: E402
from green_callbacks.core.session import Distributed  # noqa: E402
from green_callbacks.errors import (  # noqa: E402
    ConfigError,
    EnergyCallbackMissingError,
    OutputFailureWarning,
)
from green_callbacks.meters.share import RankShare  # noqa: E402
from green_callbacks.policies import SaveReason, StopReason  # noqa: E402
from green_callbacks.testing import FakeClock, FakeMeter, fake_metered  # noqa: E402
from green_callbacks.tf_keras import (  # noqa: E402
    EnergyCallback,
    EnergyCheckpoint,
    EnergyEarlyStopping,
    OOMGuard,
)
from tests.keras.fit_helpers import (  # noqa: E402
    FaultyMemoryHooks,
    ScriptedHooks,
    TicksHooks,
    tensorflow_out_of_memory,
)

BATCH = 16
BATCHES_PER_EPOCH = 4


class Ticks(TicksHooks, tf_keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = TicksHooks.__doc__


class Scripted(ScriptedHooks, tf_keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = ScriptedHooks.__doc__


class FaultyMemory(FaultyMemoryHooks, tf_keras.layers.Layer):  # type: ignore[misc]
    __doc__ = FaultyMemoryHooks.__doc__
    out_of_memory = staticmethod(tensorflow_out_of_memory)


def model(fault: FaultyMemory | None = None) -> Any:
    layers: list[Any] = [tf_keras.Input((8,))]
    if fault is not None:
        layers.append(fault)
    layers += [tf_keras.layers.Dense(4, activation="relu"), tf_keras.layers.Dense(2)]
    net = tf_keras.Sequential(layers)
    net.compile(
        optimizer="adam",
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=fault is not None,
    )
    return net


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    samples = BATCH * BATCHES_PER_EPOCH
    return rng.normal(size=(samples, 8)).astype("float32"), rng.integers(0, 2, size=samples)


def energy() -> tuple[EnergyCallback, FakeClock]:
    return fake_metered(EnergyCallback)


def fit(net: Any, callbacks: list[Any], epochs: int = 10) -> Any:
    x, y = data()
    return net.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks)


def test_early_stopping_stops_on_budget_and_on_diminishing_returns() -> None:
    meter, clock = energy()
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", budget_j=1000.0)
    history = fit(model(), [Ticks(meter, clock), meter, Scripted([0.5]), stopper])
    # 400 J per epoch: after 800 J a third epoch would reach 1200 J > 1000 J
    assert history.epoch == [0, 1] and history.history[keys.TOTAL_J] == [400.0, 800.0]
    assert stopper.decision is not None and stopper.decision.reason is StopReason.BUDGET
    assert history.history[keys.STOP_SAVED_ESTIMATE_J] == [0.0, 8 * 400.0]

    meter, clock = energy()
    net = model()
    snapshots: list[list[np.ndarray]] = []
    keep = tf_keras.callbacks.LambdaCallback(
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


def test_the_policies_name_the_tf_keras_energy_callback_when_it_is_missing() -> None:
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", target=0.9)
    with pytest.raises(EnergyCallbackMissingError, match=r"green_callbacks\.tf_keras\.Energy"):
        fit(model(), [Scripted([0.5]), stopper], epochs=1)


def test_a_signal_saves_and_the_next_fit_resumes_weights_optimizer_and_energy(
    tmp_path: Path,
) -> None:
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
    weights_at_save = net.get_weights()
    moments_at_save = [v.numpy() for v in net.optimizer.variables]

    meter2, clock2 = energy()
    net2 = model()
    saver2 = EnergyCheckpoint(tmp_path / "backup", every_kj=1000.0, signals=("SIGUSR1",))
    stopper2 = EnergyEarlyStopping(monitor="val_acc", mode="max", target=2.0)
    restored: list[tuple[list[np.ndarray], list[np.ndarray]]] = []

    def peek(logs: Any) -> None:  # after the restore, before the first step
        restored.append((net2.get_weights(), [v.numpy() for v in net2.optimizer.variables]))

    look = tf_keras.callbacks.LambdaCallback(on_train_begin=peek)
    history2 = fit(net2, [Ticks(meter2, clock2), meter2, Scripted([0.5]), saver2, stopper2, look],
                   epochs=3)  # fmt: skip

    assert saver2.resumed_from is not None
    weights, moments = restored[0]
    for got, want in zip([*weights, *moments], [*weights_at_save, *moments_at_save], strict=True):
        np.testing.assert_array_equal(got, want)
    assert history2.epoch == [1, 2]  # tf_keras resumes at the start of the interrupted epoch
    assert history2.history[keys.TOTAL_J][-1] == 600.0 + 800.0
    assert stopper2.policy.epochs == 3 and stopper2.policy.state_dict()["costs_j"] == [400.0] * 3
    assert not (tmp_path / "backup").exists()  # finished: the next run starts afresh
    # a third fit is not steered by the finished one: it starts where it is told
    assert fit(net2, [energy()[0]], epochs=2).epoch == [0, 1]


def test_a_torn_backup_resumes_from_the_one_before(tmp_path: Path) -> None:
    meter, clock = energy()
    saver = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3, keep_last=2, delete_on_finish=False)
    fit(model(), [Ticks(meter, clock), meter, saver], epochs=3)
    older, newest = sorted(p for p in (tmp_path / "backup").iterdir() if p.is_dir())
    [data_file] = newest.glob("weights.data-*")
    data_file.write_bytes(data_file.read_bytes()[:50])  # torn by a full disk or a bad copy

    meter2, clock2 = energy()
    again = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3, delete_on_finish=False)
    with pytest.warns(OutputFailureWarning, match=f"resuming from .*{older.name}.*passed over"):
        history = fit(model(), [Ticks(meter2, clock2), meter2, again], epochs=3)
    assert again.resumed_from == older and history.epoch[0] == int(older.name[-9])


def test_backup_and_restore_beside_it_is_refused_clearly(tmp_path: Path) -> None:
    meter, clock = energy()
    saver = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3, delete_on_finish=False)
    fit(model(), [Ticks(meter, clock), meter, saver], epochs=1)
    meter2, _ = energy()
    theirs = tf_keras.callbacks.BackupAndRestore(str(tmp_path / "theirs"))
    again = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3)
    with pytest.raises(ConfigError, match="BackupAndRestore both resume"):
        fit(model(), [meter2, theirs, again], epochs=1)


def test_oom_mid_training_is_survived_with_a_smaller_batch(tmp_path: Path) -> None:
    meter, clock = energy()
    fault = FaultyMemory(fits=4, after=6)  # 16 fits for 6 steps (1.5 epochs), then only 4
    guard = OOMGuard(preflight=False, dirpath=tmp_path / "oom")
    x, y = data()
    history = guard.fit(model(fault), x, y, batch_size=16, epochs=3, verbose=0,
                        callbacks=[Ticks(meter, clock), meter])  # fmt: skip

    assert [(e.batch_size, e.new_batch_size) for e in guard.events] == [(16, 8), (8, 4)]
    assert guard.batch_size == 4 and set(fault.sizes[6:]) == {4}
    assert history.epoch == [0, 1, 2] and history.history[keys.OOM_BATCH_SIZE] == [4, 4]
    assert history.history[keys.TOTAL_J][-1] == 100.0 * len(fault.sizes)
    assert meter.summary is not None
    assert [e["new_batch_size"] for e in meter.summary["facts"]["oom_events"]] == [8, 4]


def test_preflight_shrinks_before_training_and_leaves_no_trace() -> None:
    fault = FaultyMemory(fits=20)
    net = model(fault)
    before = net.get_weights()
    first: list[list[np.ndarray]] = []
    peek = tf_keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: first.append(net.get_weights())
    )
    x, y = data()
    guard = OOMGuard()
    guard.fit(net, x, y, batch_size=64, epochs=1, verbose=0, callbacks=[peek])

    assert [(e.batch_size, e.new_batch_size) for e in guard.events] == [(64, 32), (32, 16)]
    assert set(fault.sizes) == {16} and guard.preflight_peak_source == "host peak RSS"
    for got, want in zip(first[0], before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_worker_of_a_multi_worker_job_is_told_to_use_backup_and_restore(tmp_path: Path) -> None:
    class Worker(EnergyCallback):  # type: ignore[misc]
        """Worker 0 of two, summing with a stand-in for the strategy's all-reduce."""

        def _distributed(self) -> Distributed:
            return Distributed(RankShare(rank=0, world_size=2, all_devices=True), list)

    meter = Worker(meters=FakeMeter({"cpu:0": 10.0}))
    with pytest.raises(ConfigError, match="worker of a multi-worker job; use tf_keras.callbacks"):
        fit(model(), [meter, EnergyCheckpoint(tmp_path / "backup")], epochs=1)
