"""Runs read back from the real loggers (CSV, TensorBoard, a real MLflow server) agree with
the energy summary of the same fit, and one report shows them side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger  # noqa: E402

from green_callbacks.analysis import read_run  # noqa: E402
from green_callbacks.analysis.report import build_report  # noqa: E402
from green_callbacks.core import keys  # noqa: E402
from green_callbacks.lightning import EnergyCallback  # noqa: E402
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402

EPOCHS = 4


def test_every_logger_gives_back_the_summarys_run(tmp_path: Path, mlflow_server: str) -> None:
    csv, board = CSVLogger(tmp_path, name="csv"), TensorBoardLogger(tmp_path, name="tb")
    mlflow = MLFlowLogger(experiment_name="report", tracking_uri=mlflow_server)
    callback = EnergyCallback(meters=constant_power_trace(tmp_path, 60.0),
                              summary_path=tmp_path / "summary.json")  # fmt: skip
    train, val = digits_loaders(batch_size=64, seed=0)
    trainer = pl.Trainer(max_epochs=EPOCHS, logger=[csv, board, mlflow], callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False,
                         log_every_n_steps=5)  # fmt: skip
    trainer.fit(DigitsCNN(), train, val)
    summary = json.loads((tmp_path / "summary.json").read_text())
    logged_j = float(trainer.callback_metrics[keys.TOTAL_J])  # the last total the loggers got
    assert summary["totals"]["energy_j"] >= logged_j  # the summary adds the teardown after it
    runs = {
        "csv": read_run(csv.log_dir),
        "tensorboard": read_run(board.log_dir),
        "mlflow": read_run(f"mlflow:{mlflow.run_id}@{mlflow_server}"),
    }
    assert runs["csv"].formats == ["csv-log"] and runs["tensorboard"].formats == ["tensorboard"]
    accuracy = [v for _, v in runs["csv"].series("val_acc")]
    assert len(accuracy) == EPOCHS
    for name, run in runs.items():
        assert run.energy_kind == "replayed", name  # from hparams.yaml / MLflow params
        # The last energy/total_j logged, as each logger stored it (float32 in some)
        assert run.total_j == pytest.approx(logged_j, rel=1e-6), name
        assert [v for _, v in run.series("val_acc")] == pytest.approx(accuracy, rel=1e-6), name
        assert [e for e, _ in run.epoch_energy()] == list(range(EPOCHS)), name
    page = build_report(list(runs.values()), tmp_path / "report")
    text = page.read_text(encoding="utf-8")
    assert text.count("<section>") == 4 and (tmp_path / "report" / "runs_overlay.png").is_file()
