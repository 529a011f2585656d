"""Energy metrics in real TensorBoard event files, read back with TensorBoard's EventAccumulator."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tensorboard", reason="needs the 'tensorboard' extra")

from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)
from tensorboard.util import tensor_util

from green_callbacks.testing import constant_power_trace

POWER_W = 75.0
EPOCHS = 2


def scalars(folder: Path) -> dict[str, list[float]]:
    """Every scalar series (and tensor-summary scalars, as Keras writes them) under ``folder``."""
    series: dict[str, list[float]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events)).Reload()
        for tag in accumulator.Tags()["scalars"]:
            series.setdefault(tag, []).extend(e.value for e in accumulator.Scalars(tag))
        for tag in accumulator.Tags()["tensors"]:
            arrays = [tensor_util.make_ndarray(e.tensor_proto) for e in accumulator.Tensors(tag)]
            values = [float(a) for a in arrays if a.size == 1 and a.dtype.kind == "f"]
            series.setdefault(f"{events.parent.name}/{tag}", []).extend(values)
    return series


def test_lightning_tensorboard_logger(tmp_path: Path) -> None:
    pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
    from lightning.pytorch.loggers import TensorBoardLogger

    from green_callbacks.lightning import EnergyCallback
    from green_callbacks.lightning.demo import DigitsCNN, digits_loaders

    energy = EnergyCallback(meters=constant_power_trace(tmp_path, POWER_W), granularity="batch")
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=TensorBoardLogger(tmp_path / "tb"),
        callbacks=[energy], enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, log_every_n_steps=5,
    )  # fmt: skip
    trainer.fit(DigitsCNN(), *digits_loaders(batch_size=64, seed=0))

    logged = scalars(tmp_path / "tb")
    assert len(logged["energy/train_epoch_j"]) == EPOCHS
    assert logged["power/train_avg_w"] == pytest.approx([POWER_W] * EPOCHS, rel=0.01)
    assert len(logged["energy/train_step_j"]) >= 4 and min(logged["energy/train_step_j"]) > 0
    assert logged["energy/total_j"] == sorted(logged["energy/total_j"])
    assert len(logged["energy/total_j"]) == EPOCHS  # once per epoch: not again with validation
    assert "val_acc" in logged
    assert not {"energy_j", "power_w"} & set(logged)  # progress-bar figures stay on the bar


def test_keras_tensorboard_callback(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras", reason="needs the 'keras' extra")
    pytest.importorskip("tensorflow", reason="Keras' TensorBoard callback writes with TensorFlow")
    np = pytest.importorskip("numpy")

    from green_callbacks.keras import EnergyCallback

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 8)).astype("float32"), rng.integers(0, 2, size=128)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(
        x, y, epochs=EPOCHS, batch_size=32, validation_split=0.25, verbose=0,
        callbacks=[
            EnergyCallback(meters=constant_power_trace(tmp_path, POWER_W)),
            keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb")),
        ],
    )  # fmt: skip

    logged = scalars(tmp_path / "tb")
    train = logged["train/epoch_energy/train_epoch_j"]
    assert len(train) == EPOCHS and min(train) > 0
    assert logged["train/epoch_power/train_avg_w"] == pytest.approx([POWER_W] * EPOCHS, rel=0.01)
    # Keras routes only "val_"-prefixed keys to its validation writer; ours keep their own names.
    assert len(logged["train/epoch_energy/val_epoch_j"]) == EPOCHS
