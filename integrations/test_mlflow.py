"""Energy metrics reach a real MLflow tracking server, read back through the MLflow client."""

from __future__ import annotations

from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="needs the 'mlflow' extra")

from mlflow.tracking import MlflowClient  # noqa: E402

from green_callbacks.testing import constant_power_trace  # noqa: E402

POWER_W = 60.0
EPOCHS = 2


def history(client: MlflowClient, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_lightning_mlflow_logger(tmp_path: Path, mlflow_server: str) -> None:
    pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
    from lightning.pytorch.loggers import MLFlowLogger

    from green_callbacks.lightning import EnergyCallback
    from green_callbacks.lightning.demo import DigitsCNN, digits_loaders

    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=mlflow_server)
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=logger, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=5,
        callbacks=[EnergyCallback(meters=constant_power_trace(tmp_path, POWER_W))],
    )  # fmt: skip
    trainer.fit(DigitsCNN(), *digits_loaders(batch_size=64, seed=0))

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(logger.run_id)
    train, val = (
        history(client, run.info.run_id, "energy/train_epoch_j"),
        history(client, run.info.run_id, "energy/val_epoch_j"),
    )
    assert len(train) == EPOCHS and len(val) == EPOCHS and min(train + val) > 0
    assert history(client, run.info.run_id, "power/train_avg_w") == pytest.approx(
        [POWER_W] * EPOCHS, rel=0.01
    )
    totals = history(client, run.info.run_id, "energy/total_j")
    assert totals == sorted(totals) and totals[-1] >= sum(train) + sum(val)
    assert run.data.metrics["val_acc"] > 0.5  # accuracy sits next to the joules
    assert run.data.params["energy_source/kind"] == "replayed"


def test_keras_with_mlflow_callback(tmp_path: Path, mlflow_server: str) -> None:
    keras = pytest.importorskip("keras", reason="needs the 'keras' extra")
    np = pytest.importorskip("numpy")
    from mlflow.keras import MlflowCallback

    from green_callbacks.keras import EnergyCallback

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 8)).astype("float32"), rng.integers(0, 2, size=128)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("keras")
    with mlflow.start_run() as run:
        energy = EnergyCallback(meters=constant_power_trace(tmp_path, POWER_W))
        model.fit(
            x, y, epochs=EPOCHS, batch_size=32, validation_split=0.25, verbose=0,
            callbacks=[energy, MlflowCallback()],  # energy first: MLflow reads the shared logs
        )  # fmt: skip
    mlflow.flush_async_logging()

    client = MlflowClient(tracking_uri=mlflow_server)
    train = history(client, run.info.run_id, "energy/train_epoch_j")
    assert len(train) == EPOCHS and min(train) > 0
    assert history(client, run.info.run_id, "power/train_avg_w") == pytest.approx(
        [POWER_W] * EPOCHS, rel=0.01
    )
    assert len(history(client, run.info.run_id, "accuracy")) == EPOCHS
