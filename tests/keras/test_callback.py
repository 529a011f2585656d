"""EnergyCallback in real Keras 3 fits (torch backend), read back from CSVLogger and History."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path
from types import MethodType
from typing import Any

import pytest

keras = pytest.importorskip("keras", reason="needs the 'keras' extra")
np = pytest.importorskip("numpy")

from green_callbacks.errors import InterruptedRunWarning  # noqa: E402
from green_callbacks.keras import EnergyCallback, EnergyCheckpoint  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402

POWER_W = 150.0


@pytest.fixture
def trace(tmp_path: Path) -> str:
    return constant_power_trace(tmp_path, POWER_W)


def model() -> keras.Model:
    net = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]
    )
    net.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return net


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 2, size=64)


def test_fit_puts_energy_in_the_shared_logs(tmp_path: Path, trace: str) -> None:
    x, y = data()
    log_file = tmp_path / "log.csv"
    stop = keras.callbacks.EarlyStopping(monitor="energy/train_epoch_j", mode="min", patience=5)
    history = model().fit(
        x, y, epochs=2, batch_size=16, validation_data=(x, y), verbose=0,
        callbacks=[EnergyCallback(meters=trace), keras.callbacks.CSVLogger(str(log_file)), stop],
    )  # fmt: skip

    with log_file.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        assert float(row["energy/train_epoch_j"]) > 0 and float(row["energy/val_epoch_j"]) > 0
        assert float(row["power/train_avg_w"]) == pytest.approx(POWER_W, rel=0.01)
    totals = history.history["energy/total_j"]
    assert totals == sorted(totals)
    assert (
        sum(history.history["energy/train_epoch_j"]) + sum(history.history["energy/val_epoch_j"])
        <= totals[-1]
    )
    assert "val_loss" in history.history


def test_batch_granularity_reaches_batch_logs(trace: str) -> None:
    seen: list[float] = []
    spy = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: seen.append(logs["energy/train_step_j"])
    )
    x, y = data()
    model().fit(
        x,
        y,
        epochs=1,
        batch_size=16,
        verbose=0,
        callbacks=[EnergyCallback(meters=trace, granularity="batch"), spy],
    )

    assert len(seen) == 4 and all(s >= 0 for s in seen) and sum(seen) > 0


def test_evaluate_and_predict_report_their_energy(tmp_path: Path, trace: str) -> None:
    x, y = data()
    net = model()
    callback = EnergyCallback(meters=trace, summary_path=tmp_path / "summary.json")

    seen: dict[str, float] = {}
    spy = keras.callbacks.LambdaCallback(on_test_end=lambda logs: seen.update(logs))

    net.evaluate(x, y, verbose=0, callbacks=[callback, spy])
    assert seen["energy/test_j"] > 0 and "loss" in seen  # later callbacks see it with the loss
    net.predict(x, verbose=0, callbacks=[callback])

    assert callback.last_metrics["energy/predict_j"] > 0
    assert callback.summary is not None and callback.summary["totals"]["kind"] == "replayed"
    assert (tmp_path / "summary.json").exists()


def test_a_fit_resumed_from_saved_state_continues_the_total(tmp_path: Path, trace: str) -> None:
    x, y = data()
    first = EnergyCallback(meters=trace)
    model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[first])
    saved = json.loads(json.dumps(first.state_dict()))  # plain JSON, as a sidecar would hold
    before = first.summary["totals"]["energy_j"]  # type: ignore[index]

    resumed = EnergyCallback(meters=trace)
    resumed.load_state_dict(saved)
    history = model().fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[resumed])

    total = history.history["energy/total_j"][0]
    assert total > before + history.history["energy/train_epoch_j"][0] * 0.99
    assert resumed.summary["resumed"] is True  # type: ignore[index]


def test_a_failed_fit_is_closed_with_a_note_as_soon_as_it_ends(tmp_path: Path) -> None:
    class Failing(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def __len__(self) -> int:
            return 8

        def __getitem__(self, index: int) -> Any:
            self.calls += 1
            if self.calls == 7:
                raise OSError("a data file went missing")
            rng = np.random.default_rng(index)
            return rng.normal(size=(16, 8)).astype("float32"), rng.integers(0, 2, size=16)

    net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    net.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = EnergyCallback(meters="estimate", summary_path=tmp_path / "summary.json")
    checkpoint = EnergyCheckpoint(tmp_path / "backups", signals=("SIGUSR1",))
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: received.append(number))
    try:
        with pytest.raises(Exception, match="went missing"):  # TensorFlow wraps it in its own
            net.fit(Failing(), epochs=2, verbose=0, callbacks=[callback, checkpoint])
        # Keras called no end hook; the watcher closes the run within its interval
        with pytest.warns(InterruptedRunWarning, match="ended without its end hook"):
            deadline = time.monotonic() + 5.0
            while callback.session is not None and time.monotonic() < deadline:
                time.sleep(0.02)
        latched = signal.getsignal(signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)  # the fit is over: the user's handler gets it
        after = signal.getsignal(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert isinstance(latched, MethodType) and type(latched.__self__).__name__ == "SignalLatch"
    assert received == [signal.SIGUSR1] and not isinstance(after, MethodType)

    assert callback.session is None
    written = json.loads((tmp_path / "summary.json").read_text())
    assert any("fit() ended without its end hook" in note for note in written["notes"])
    assert written["totals"]["duration_s"] < 5.0
    assert not {"green-callbacks-sampler", "green-callbacks-watch"} & set(threading_names())

    time.sleep(1.0)  # idle after the failure: part of no run
    net.fit(np.zeros((32, 8), "float32"), np.zeros(32), epochs=1, verbose=0, callbacks=[callback])
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["totals"]["duration_s"] < 1.0 and written["resumed"] is False
    assert written["notes"] == []


def threading_names() -> list[str]:
    return [t.name for t in threading.enumerate()]


def test_run_dir_holds_the_history_with_the_users_metrics(tmp_path: Path, trace: str) -> None:
    from green_callbacks.analysis import read_run

    x, y = data()
    model().fit(x, y, epochs=3, batch_size=16, validation_data=(x, y), verbose=0,
                callbacks=[EnergyCallback(meters=trace, run_dir=tmp_path / "run")])  # fmt: skip
    run = read_run(tmp_path / "run")
    assert [row["epoch"] for row in run.epochs] == [0, 1, 2]
    for row in run.epochs:
        assert {"loss", "val_loss", "energy/train_epoch_j", "time/data_wait_fraction",
                "memory/host_rss_mib"} <= set(row)  # fmt: skip
        assert 0 <= row["time/data_wait_fraction"] < 1
    assert run.facts["params"] == 8 * 4 + 4 + 4 * 2 + 2 and run.facts["dtypes"] == ["float32"]
    assert run.facts["checkpoints"] == []  # no save during the fit (each save is watched)


def test_a_second_fit_gets_a_folder_of_its_own_and_an_evaluate_keeps_it(
    tmp_path: Path, trace: str
) -> None:
    from green_callbacks.analysis import read_run

    x, y = data()
    net, energy = model(), EnergyCallback(meters=trace, run_dir=tmp_path / "run")
    net.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[energy])
    first_j = energy.summary["totals"]["energy_j"]
    net.evaluate(x, y, verbose=0, callbacks=[energy])  # after the fit: the same run's folder
    assert energy.run_folder == tmp_path / "run" / "version_0"
    net.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[energy])
    assert energy.run_folder == tmp_path / "run" / "version_1"
    assert [row["epoch"] for row in read_run(tmp_path / "run" / "version_0").epochs] == [0, 1]
    second = read_run(tmp_path / "run" / "version_1")
    assert [row["epoch"] for row in second.epochs] == [0, 1, 2]  # not 0, 1, 0, 1, 2
    assert second.total_j is not None and second.total_j > first_j  # the totals go on, said so
    assert any("the energy totals continue an earlier run's" in n for n in second.notes)


def test_batch_ends_are_timed_on_the_training_thread_when_the_batch_ends(trace: str) -> None:
    """Keras hands batch ends to a worker thread when every callback says it is async-safe
    (verbose=0, no other callback): this one's are timed, so it must not say so."""
    threads: list[int] = []

    class Spy(EnergyCallback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            threads.append(threading.get_ident())
            super().on_train_batch_end(batch, logs)

    x, y = data()
    model().fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[Spy(meters=trace)])

    assert threads == [threading.get_ident()] * 4


def test_per_sample_figures_count_the_partial_last_batch() -> None:
    """70 samples in batches of 16: four of 16 and a last of 6, in fit, evaluate and predict."""
    from green_callbacks.testing import fake_metered

    callback, clock = fake_metered(EnergyCallback, power_w=100.0)
    tick = keras.callbacks.LambdaCallback(  # 1 s a batch of any loop, on the fake clock
        on_train_batch_end=lambda b, logs: clock.advance(1.0),
        on_test_batch_end=lambda b, logs: clock.advance(1.0),
        on_predict_batch_end=lambda b, logs: clock.advance(1.0),
    )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(70, 8)).astype("float32"), rng.integers(0, 2, size=70)
    net = model()
    history = net.fit(
        x, y, epochs=1, batch_size=16, validation_data=(x[:40], y[:40]), verbose=0,
        callbacks=[callback, tick],
    )  # fmt: skip

    assert history.history["energy/train_j_per_sample"] == [500.0 / 70]  # 5 batches, 1 s each
    assert history.history["energy/val_j_per_sample"] == [300.0 / 40]  # 16 + 16 + 8
    net.predict(x, batch_size=32, verbose=0, callbacks=[callback, tick])  # 32 + 32 + 6
    assert callback.last_metrics["energy/predict_j_per_sample"] == 300.0 / 70
    assert callback.summary is not None
    assert callback.summary["facts"]["inference_j_per_sample"] == 300.0 / 70


def test_the_summary_says_whether_the_weights_were_loaded(tmp_path: Path, trace: str) -> None:
    x, y = data()
    fresh = model()
    facts = []
    for net in (fresh, model(), "saved"):
        if net == "saved":
            net = keras.models.load_model(tmp_path / "whole.keras")
        elif net is not fresh:
            net.load_weights(tmp_path / "fresh.weights.h5")
        callback = EnergyCallback(meters=trace, summary_path=tmp_path / "summary.json")
        net.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
        facts.append(callback.summary["facts"])  # type: ignore[index]
        if net is fresh:
            fresh.save_weights(tmp_path / "fresh.weights.h5")
            fresh.save(tmp_path / "whole.keras")

    assert [f["loaded_weights"] for f in facts] == [False, True, True]
    assert facts[0]["architecture"] == "Sequential"  # Keras's default name: the class's


def test_every_save_during_a_fit_is_a_checkpoint(tmp_path: Path, trace: str) -> None:
    x, y = data()
    saves = []
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))  # every epoch
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    for extra in ([], [checkpoint], [checkpoint, backup]):
        callback = EnergyCallback(meters=trace, summary_path=tmp_path / "summary.json")
        model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback, *extra])
        saves.append(len(callback.summary["facts"]["checkpoints"]))  # type: ignore[index]
    assert saves == [0, 2, 4]
