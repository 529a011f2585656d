"""The advisor on real Lightning fits made to show each symptom, judged from their run folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
