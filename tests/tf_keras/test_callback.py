"""EnergyCallback on tf_keras (Keras 2) models, whose fit rejects Keras 3 callbacks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras")

from green_callbacks.analysis import read_run  # noqa: E402
from green_callbacks.testing import FakeMeter, constant_power_trace  # noqa: E402
from green_callbacks.tf_keras import EnergyCallback  # noqa: E402

POWER_W = 50.0


def model() -> object:
    net = tf_keras.Sequential(
        [tf_keras.layers.Dense(4, activation="relu", input_shape=(8,)), tf_keras.layers.Dense(2)]
    )
    net.compile(
        optimizer="sgd",
        metrics=["accuracy"],
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return net


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 2, size=64)


def test_fit_puts_the_same_keys_in_the_shared_logs_and_the_run_folder(tmp_path: Path) -> None:
    x, y = data()
    energy = EnergyCallback(
        meters=constant_power_trace(tmp_path, POWER_W), run_dir=tmp_path / "run"
    )
    history = model().fit(
        x,
        y,
        epochs=2,
        batch_size=16,
        validation_data=(x, y),
        verbose=0,
        callbacks=[energy, tf_keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))],
    )
    with (tmp_path / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        assert float(row["power/train_avg_w"]) == pytest.approx(POWER_W, rel=0.01)
        assert (
            float(row["energy/val_epoch_j"]) > 0 and 0 <= float(row["time/data_wait_fraction"]) < 1
        )
    totals = history.history["energy/total_j"]
    assert totals == sorted(totals) and energy.summary is not None
    assert energy.summary["totals"]["energy_j"] >= totals[-1]
    run = read_run(tmp_path / "run")
    assert run.facts["params"] == 8 * 4 + 4 + 4 * 2 + 2 and run.facts["dtypes"] == ["float32"]
    assert run.series("val_accuracy") and run.energy_kind == "replayed"


def test_evaluate_and_predict_report_their_energy(tmp_path: Path) -> None:
    x, y = data()
    energy = EnergyCallback(meters=constant_power_trace(tmp_path, POWER_W))
    net = model()
    net.evaluate(x, y, verbose=0, callbacks=[energy])
    assert energy.last_metrics["power/test_avg_w"] == pytest.approx(POWER_W, rel=0.01)
    net.predict(x, verbose=0, callbacks=[energy])
    assert energy.last_metrics["energy/predict_j"] > 0


def test_a_warning_points_at_the_users_fit_line(tmp_path: Path) -> None:
    from green_callbacks.errors import EnergySourceWarning

    x, y = data()
    failing = FakeMeter({"cpu:0": 10.0}, fail_after=3)  # a sensor that dies mid-fit
    with pytest.warns(EnergySourceWarning) as caught:
        model().fit(x, y, epochs=2, verbose=0, callbacks=[EnergyCallback(meters=[failing])])
    assert Path(caught[0].filename).name == "test_callback.py"  # not tf_keras's callbacks.py
