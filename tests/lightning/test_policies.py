"""EnergyEarlyStopping and EnergyCheckpoint in real Lightning fits.

Energy is made deterministic with a FakeMeter (100 W) on a FakeClock that the
model advances by one second per training step: 100 J per step, 400 J per epoch.
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path
from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
torch = pytest.importorskip("torch", reason="needs the 'lightning' extra")

from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from green_callbacks.core import keys  # noqa: E402
from green_callbacks.errors import CheckpointLoadError, OutputFailureWarning  # noqa: E402
from green_callbacks.lightning import (  # noqa: E402
    EnergyCallback,
    EnergyCallbackMissingError,
    EnergyCheckpoint,
    EnergyEarlyStopping,
)
from green_callbacks.policies import SaveReason, StopReason  # noqa: E402
from green_callbacks.testing import FakeClock, constant_power_trace, fake_metered  # noqa: E402

STEP_J = 100.0
STEPS_PER_EPOCH = 4


class ScriptedModel(pl.LightningModule):
    """Logs a scripted ``val_acc`` per epoch; each training step moves the fake clock 1 s."""

    def __init__(self, accuracies: list[float], clock: FakeClock | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 2)
        self.accuracies = accuracies
        self.clock = clock
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.signal_at_step: int | None = None
        self.val_step_s = 0.0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.clock is not None:
            self.clock.advance(STEP_J / 100.0)
        if self.global_step == self.signal_at_step:
            os.kill(os.getpid(), signal.SIGUSR1)  # a scheduler's pre-emption warning, mid-step
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if self.clock is not None:
            self.clock.advance(self.val_step_s)
        self.log("val_acc", self.accuracies[min(self.current_epoch, len(self.accuracies) - 1)])

    def on_train_epoch_end(self) -> None:
        self.snapshots[self.current_epoch] = {
            k: v.clone() for k, v in self.layer.state_dict().items()
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


def loader() -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16 * STEPS_PER_EPOCH, 8, generator=generator)
    y = torch.randint(0, 2, (16 * STEPS_PER_EPOCH,), generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def fit(
    tmp_path: Path, model: ScriptedModel, callbacks: list[Any], epochs: int = 10,
    check_val_every_n_epoch: int = 1, **kwargs: Any,
) -> pl.Trainer:  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=CSVLogger(tmp_path, name="logs", version=0),
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=1,
        check_val_every_n_epoch=check_val_every_n_epoch,
    )  # fmt: skip
    trainer.fit(model, loader(), loader(), **kwargs)
    return trainer


def fake_energy() -> tuple[EnergyCallback, FakeClock]:
    return fake_metered(EnergyCallback)


def logged(tmp_path: Path, key: str) -> list[float]:
    with open(tmp_path / "logs" / "version_0" / "metrics.csv", newline="") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def test_budget_stops_before_an_epoch_that_would_overrun(tmp_path: Path) -> None:
    energy, clock = fake_energy()
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", budget_j=1000.0)
    trainer = fit(tmp_path, ScriptedModel([0.5], clock), [energy, stopper])

    # 400 J per epoch: after 2 epochs (800 J) a third would reach 1200 J > 1000 J.
    assert trainer.current_epoch == 2 and logged(tmp_path, keys.TOTAL_J)[-1] == pytest.approx(800.0)
    assert stopper.decision is not None and stopper.decision.reason is StopReason.BUDGET
    saved = logged(tmp_path, keys.STOP_SAVED_ESTIMATE_J)
    assert saved == [pytest.approx(8 * 400.0)]  # 8 planned epochs not run, labelled an estimate
    hparams = (tmp_path / "logs" / "version_0" / "hparams.yaml").read_text()
    assert "early_stopping/reason: budget" in hparams


def test_diminishing_returns_stop_and_best_weights_restored(tmp_path: Path) -> None:
    energy, clock = fake_energy()
    model = ScriptedModel([0.5, 0.8, 0.85, 0.79, 0.80, 0.81], clock)
    stopper = EnergyEarlyStopping(
        monitor="val_acc", mode="max", min_gain_per_kj=0.05, patience=2,
        restore_best_weights=True,
    )  # fmt: skip
    trainer = fit(tmp_path, model, [energy, stopper])

    # epoch 3 (index 3): best 0.85 vs 0.8 two epochs before: 0.05 / 0.8 kJ = 0.0625 >= 0.05;
    # epoch 4: 0.85 vs 0.85: 0 per kJ -> stop after 5 epochs.
    assert trainer.current_epoch == 5
    assert stopper.decision is not None
    assert stopper.decision.reason is StopReason.DIMINISHING_RETURNS
    assert "below min_gain_per_kj=0.05" in stopper.decision.message
    assert torch.equal(model.layer.weight, model.snapshots[2]["weight"])  # the 0.85 epoch


def test_validation_energy_counts_only_in_epochs_that_validated(tmp_path: Path) -> None:
    energy, clock = fake_energy()
    model = ScriptedModel([0.5], clock)
    model.val_step_s = 0.5  # 4 validation batches: 200 J
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", budget_j=1e6)
    fit(tmp_path, model, [energy, stopper], epochs=4, check_val_every_n_epoch=2)

    # validation in epochs 1 and 3 only; a stale val figure is not counted again in epoch 2
    assert stopper.policy.state_dict()["costs_j"] == [600.0, 400.0, 600.0]
    assert stopper.policy.epochs == 4 and logged(tmp_path, keys.TOTAL_J)[-1] == 2000.0


def test_target_stops_when_reached(tmp_path: Path) -> None:
    energy, clock = fake_energy()
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", target=0.9)
    trainer = fit(tmp_path, ScriptedModel([0.5, 0.7, 0.92, 0.95], clock), [energy, stopper])

    assert trainer.current_epoch == 3 and stopper.decision is not None
    assert stopper.decision.reason is StopReason.TARGET_REACHED


def test_policy_callbacks_without_energy_callback_say_what_to_add(tmp_path: Path) -> None:
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", target=0.9)
    with pytest.raises(EnergyCallbackMissingError, match=r"callbacks=\[EnergyCallback\(\)"):
        fit(tmp_path, ScriptedModel([0.5]), [stopper])


def energy_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("energy-"))


def test_checkpoints_follow_energy_atomically_and_keep_the_last_k(tmp_path: Path) -> None:
    energy = EnergyCallback(meters=constant_power_trace(tmp_path, 150.0))
    saver = EnergyCheckpoint(tmp_path / "ckpt", every_kj=0.001, keep_last=2)  # every 1 J
    fit(tmp_path, ScriptedModel([0.5]), [energy, saver], epochs=3)

    files = energy_files(tmp_path / "ckpt")
    assert saver.planner.saves > 2 and len(files) == 2
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".part-")]
    steps = [torch.load(tmp_path / "ckpt" / f, weights_only=False)["global_step"] for f in files]
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert last["global_step"] == max(steps)  # last.ckpt is the newest save
    assert logged(tmp_path, keys.CHECKPOINT_J) and min(logged(tmp_path, keys.CHECKPOINT_J)) > 0
    assert energy.summary is not None and "phase/checkpoint" in str(energy.summary)
    # each save is recorded once (the framework's hook), with its measured energy
    saves = energy.summary["facts"]["checkpoints"]
    assert len(saves) == saver.planner.saves
    assert [s["energy_j"] for s in saves] == pytest.approx(logged(tmp_path, keys.CHECKPOINT_J))


def test_a_corrupt_newest_checkpoint_resumes_from_the_one_before(tmp_path: Path) -> None:
    energy = EnergyCallback(meters=constant_power_trace(tmp_path, 150.0))
    saver = EnergyCheckpoint(tmp_path / "ckpt", every_kj=0.001, keep_last=2)
    fit(tmp_path, ScriptedModel([0.5]), [energy, saver], epochs=2)
    folder = tmp_path / "ckpt"
    older, newest = (folder / name for name in energy_files(folder))  # step order = name order
    older_step = torch.load(older, weights_only=False)["global_step"]
    for torn in (newest, folder / "last.ckpt"):  # last.ckpt may be a link to the newest
        if not torn.is_symlink():
            torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])  # a torn copy

    again = EnergyCheckpoint(folder, every_kj=0.001, keep_last=2)
    resumed_at: list[int] = []

    class Peek(pl.Callback):  # type: ignore[misc]
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            resumed_at.append(trainer.global_step)

    with pytest.warns(OutputFailureWarning, match=r"resuming from .*energy-.*passed over: .*last"):
        fit(tmp_path / "again", ScriptedModel([0.5]), [EnergyCallback(meters="estimate"), again,
            Peek()], epochs=3, ckpt_path="last")  # fmt: skip
    assert resumed_at == [older_step]

    for path in folder.glob("*.ckpt"):  # now nothing intact is left
        path.unlink() if path.is_symlink() else path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointLoadError, match=r"no kept checkpoint.*not a torch checkpoint"):
        fit(tmp_path / "third", ScriptedModel([0.5]), [EnergyCallback(meters="estimate"),
            EnergyCheckpoint(folder, every_kj=1.0)], epochs=3, ckpt_path="last")  # fmt: skip


def test_signal_saves_stops_and_resume_continues_steps_and_total(tmp_path: Path) -> None:
    energy, clock = fake_energy()
    saver = EnergyCheckpoint(tmp_path / "ckpt", every_kj=100.0, signals=("SIGUSR1",))
    model = ScriptedModel([0.5], clock)
    model.signal_at_step = 5  # in epoch 1, at its second batch
    first = fit(tmp_path, model, [energy, saver], epochs=3)

    assert saver.last_decision is not None and saver.last_decision.reason is SaveReason.SIGNAL
    assert first.global_step == 6 and signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    stopped_total = energy.summary["totals"]["energy_j"]  # type: ignore[index]
    assert stopped_total == 600.0

    energy2, clock2 = fake_energy()
    saver2 = EnergyCheckpoint(tmp_path / "ckpt", every_kj=100.0, signals=("SIGUSR1",))
    resumed = fit(
        tmp_path / "second", ScriptedModel([0.5], clock2), [energy2, saver2], epochs=3,
        ckpt_path="last",  # Lightning resolves it through the ModelCheckpoint it is
    )  # fmt: skip

    assert resumed.global_step == 3 * STEPS_PER_EPOCH  # the planned steps, none twice
    total = energy2.summary["totals"]["energy_j"]  # type: ignore[index]
    assert total == 3 * STEPS_PER_EPOCH * STEP_J  # continuous across the stop
    assert saver2.planner.saves == 1  # the signal save, counted in the checkpoint it wrote


def test_a_fit_that_raises_gives_the_signal_handler_back(tmp_path: Path) -> None:
    class Broken(ScriptedModel):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            raise ZeroDivisionError("a bug in the user's step")

    energy, clock = fake_energy()
    saver = EnergyCheckpoint(tmp_path / "ckpt", every_kj=100.0, signals=("SIGUSR1",))
    with pytest.raises(ZeroDivisionError):
        fit(tmp_path, Broken([0.5], clock), [energy, saver], epochs=1)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_a_checkpoint_that_cannot_be_written_warns_and_training_goes_on(tmp_path: Path) -> None:
    (tmp_path / "not_a_folder").write_text("a file where the checkpoints should go")
    energy, clock = fake_energy()
    saver = EnergyCheckpoint(tmp_path / "not_a_folder", every_kj=0.25)
    with pytest.warns(OutputFailureWarning, match="could not save"):
        trainer = fit(tmp_path, ScriptedModel([0.5], clock), [energy, saver], epochs=2)

    assert trainer.current_epoch == 2 and trainer.global_step == 2 * STEPS_PER_EPOCH
    # the energy since the last save keeps growing, so every later check tries again: the
    # end of epoch 0 (the fake meter's first power figure comes from that epoch's reads),
    # each step of epoch 1 and its end; nothing counted as saved, no part file left
    assert saver.schedule.failures == 1 + STEPS_PER_EPOCH + 1 and saver.planner.saves == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".part-")) == []
    assert (tmp_path / "not_a_folder").read_text().startswith("a file")
