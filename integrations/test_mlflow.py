"""Energy metrics reach a real MLflow tracking server, read back through the MLflow client."""

from __future__ import annotations

import json
import os
import signal
import traceback
from pathlib import Path
from typing import Any

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


def test_a_tracking_server_killed_mid_run_costs_its_logs_not_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
    from lightning.pytorch.loggers import MLFlowLogger

    from green_callbacks.lightning import EnergyCallback
    from green_callbacks.lightning.demo import DigitsCNN, digits_loaders
    from integrations.conftest import running_mlflow_server, stop_group

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast, not after minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with running_mlflow_server(tmp_path) as (uri, server):

        class KillServer(pl.Callback):  # type: ignore[misc]
            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                if trainer.current_epoch == 0:
                    stop_group(server, signal.SIGKILL)
                    server.wait()

        energy = EnergyCallback(
            meters=constant_power_trace(tmp_path, POWER_W), summary_path=tmp_path / "summary.json"
        )
        trainer = pl.Trainer(
            max_epochs=3, accelerator="cpu", enable_progress_bar=False, enable_checkpointing=False,
            enable_model_summary=False, log_every_n_steps=5, callbacks=[energy, KillServer()],
            logger=MLFlowLogger(experiment_name="killed", tracking_uri=uri),
        )  # fmt: skip
        with pytest.raises(mlflow.exceptions.MlflowException) as raised:
            trainer.fit(DigitsCNN(), *digits_loaders(batch_size=64, seed=0))

    # Lightning's own logging of the loss met the dead server, not the package's
    frames = [frame.filename for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert not [name for name in frames if f"{os.sep}green_callbacks{os.sep}" in name]
    # what was metered until then is kept, with how the run ended
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert energy.summary == summary and summary["totals"]["energy_j"] > 0
    assert summary["windows"]["epoch/train"]["count"] >= 1
    assert any("ended by an exception" in note for note in summary["notes"])
    assert energy.session is None
