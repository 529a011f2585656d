"""The advisor on real Lightning fits made to show each symptom, judged from their run folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")

from green_callbacks.analysis import Thresholds, advise, read_run  # noqa: E402
from green_callbacks.lightning import EnergyCallback  # noqa: E402
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders  # noqa: E402


def fit(model, tmp_path: Path, epochs: int, **callback_args) -> Path:
    """The run folder of a real fit (``tmp_path/run/version_0``)."""
    train, val = digits_loaders(batch_size=64, seed=0)
    energy = EnergyCallback(meters="estimate", run_dir=tmp_path / "run", **callback_args)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[energy])  # fmt: skip
    trainer.fit(model, train, val)
    folder = energy.run_folder
    assert folder is not None and folder == tmp_path / "run" / "version_0"
    return folder


class Leaky(DigitsCNN):
    """Keeps 8 MiB of tensors from every step: the classic leak of a list of losses."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.kept.append(torch.ones(2 * 2**20))  # 8 MiB of float32
        return super().training_step(batch, batch_idx)


def verdicts(folder: Path, thresholds: Thresholds | None = None) -> dict[str, str]:
    return {f.pattern: f.verdict for f in advise(read_run(folder), thresholds)}


def test_a_module_keeping_tensors_is_a_leak(tmp_path: Path) -> None:
    folder = fit(Leaky(), tmp_path, epochs=4)  # 21 steps an epoch: 168 MiB more each epoch
    assert verdicts(folder)["P7"] == "applies"


def test_a_healthy_module_is_not(tmp_path: Path) -> None:
    assert verdicts(fit(DigitsCNN(), tmp_path, epochs=4))["P7"] == "does not apply"


def test_many_epochs_of_flat_accuracy_get_the_early_stopping_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    folder = fit(DigitsCNN(lr=1e-2), tmp_path, epochs=12, advise=True)
    printed = capsys.readouterr().out
    assert "energy advice for" in printed and "[applies] accuracy flattens" in printed
    assert 'EnergyEarlyStopping(monitor="val_acc"' in (folder / "advice.md").read_text()


def test_a_long_run_without_checkpoints_is_told_to_checkpoint(tmp_path: Path) -> None:
    folder = fit(DigitsCNN(), tmp_path, epochs=2)
    command = [sys.executable, "-m", "green_callbacks.cli", "advise", str(folder)]
    done = subprocess.run(
        [*command, "--long-run-s", "0.05"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "[applies] P2 checkpoint long runs" in done.stdout
    assert "do: EnergyCheckpoint(max_overhead=0.01)" in done.stdout


def undecided(path: Path) -> list[str]:
    """The rules that cannot tell, with why, on what ``advise PATH`` reads."""
    run = read_run(path)
    return [f"{f.pattern}: {f.reason}" for f in advise(run) if f.verdict == "cannot tell"]


def test_a_plain_lightning_run_is_decided(tmp_path: Path) -> None:
    """The issue's run: a CSV and a TensorBoard logger, a summary, no run folder."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    out = tmp_path / "out"
    train, val = digits_loaders(batch_size=64, seed=0)
    energy = EnergyCallback(meters="estimate", summary_path=out / "energy_summary.json")
    loggers = [CSVLogger(out, name="csv"), TensorBoardLogger(out, name="tb")]
    trainer = pl.Trainer(max_epochs=8, default_root_dir=out, logger=loggers,
                         enable_progress_bar=False, callbacks=[energy])  # fmt: skip
    trainer.fit(DigitsCNN(), train, val)
    assert len(undecided(out)) <= 1, undecided(out)


def test_a_plain_keras_run_is_decided(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    from sklearn.datasets import load_digits

    from green_callbacks.keras import EnergyCallback as KerasEnergyCallback

    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    out = tmp_path / "out"
    out.mkdir()
    model.fit(x, y, epochs=8, batch_size=32, validation_split=0.2, verbose=0, callbacks=[
        KerasEnergyCallback(meters="estimate", summary_path=out / "energy_summary.json"),
        keras.callbacks.CSVLogger(str(out / "history.csv")),
    ])  # fmt: skip
    assert len(undecided(out)) <= 1, undecided(out)


def test_a_plain_hugging_face_run_is_decided(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import numpy as np
    from sklearn.datasets import load_digits

    from green_callbacks.hf import EnergyCallback as HFEnergyCallback
    from green_callbacks.hf import attach

    digits = load_digits()
    rows = [{"input_ids": torch.tensor(d, dtype=torch.long), "labels": int(t)}
            for d, t in zip(digits.data[:640], digits.target[:640])]  # fmt: skip
    config = transformers.BertConfig(
        vocab_size=17, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=10,
    )  # fmt: skip

    def accuracy(prediction: Any) -> dict[str, float]:
        return {
            "accuracy": float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))
        }

    out = tmp_path / "out"
    trainer = transformers.Trainer(
        model=transformers.BertForSequenceClassification(config),
        args=transformers.TrainingArguments(
            output_dir=str(out), num_train_epochs=8, per_device_train_batch_size=32,
            logging_strategy="epoch", eval_strategy="epoch", save_strategy="epoch",
            report_to=["tensorboard"], use_cpu=True, disable_tqdm=True,
        ),
        train_dataset=rows[:512], eval_dataset=rows[512:], compute_metrics=accuracy,
    )  # fmt: skip
    attach(trainer, HFEnergyCallback(meters="estimate", summary_path=out / "energy_summary.json"))
    trainer.train()
    assert len(undecided(out)) <= 1, undecided(out)
