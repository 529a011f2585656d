"""Distillation in a real Lightning fit: a small digits CNN learns from a larger trained one."""

from __future__ import annotations

from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
torch = pytest.importorskip("torch", reason="needs the 'lightning' extra")
pytest.importorskip("sklearn", reason="needs the 'demo' extra")

from green_callbacks.compress import CompressConfigError, Measurement  # noqa: E402
from green_callbacks.compress.torch_models import (  # noqa: E402
    count_params,
    distillation_loss,
)
from green_callbacks.lightning import Distillation, EnergyCallback  # noqa: E402
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402
from tests.compress.test_torch_pruning import fit as train  # noqa: E402


def test_the_loss_mixes_soft_and_hard_targets() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    labels = torch.tensor([0])
    hard = torch.nn.functional.cross_entropy(logits, labels)
    # student equal to teacher: the soft term is zero, only the hard part remains
    assert distillation_loss(logits, logits, labels, alpha=0.25) == pytest.approx(0.75 * hard)
    other = torch.tensor([[0.0, 2.0, 0.0]])
    assert distillation_loss(other, logits, labels, alpha=1.0) > 0
    with pytest.raises(CompressConfigError, match="temperature=0"):
        distillation_loss(logits, logits, labels, temperature=0)


def test_a_student_distilled_from_a_teacher_is_smaller_and_judged(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train_loader, val_loader = digits_loaders(batch_size=64, seed=0)
    teacher = DigitsCNN(channels=32)
    train(teacher, train_loader, 4)
    student = DigitsCNN(channels=4)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}

    measure = Measurement(128, constant_power_trace(tmp_path, 40.0, name="r.csv"), 1, 0.05)
    module = Distillation(
        student, teacher, temperature=3.0, alpha=0.7, max_accuracy_drop=0.10, measure=measure
    )
    energy = EnergyCallback(meters=constant_power_trace(tmp_path, 40.0))
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=pl.loggers.CSVLogger(tmp_path, name="csv"),
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[energy], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, train_loader, val_loader)

    # the teacher stayed frozen; the student's own validation logged through the wrapper
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert "val_acc" in trainer.callback_metrics and "distill_loss" in trainer.callback_metrics
    # the report was made when fit ended, logged and written
    assert module.result is not None
    report = module.result.report
    assert report.original.params == count_params(teacher) > report.compressed.params
    assert report.technique == "distillation"
    assert (module.result.model is student) == report.accepted
    assert report.compressed.accuracy is not None and report.compressed.accuracy > 0.5
    assert (tmp_path / "compression_report.json").exists()
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert "compress/accepted" in logged and "compress/j_per_sample_ratio" in logged

    # report() measures again, here on other data
    again = module.report(train_loader, measure=measure)
    assert again.report.accepted and again.report.original.params == report.original.params


def test_the_plain_pytorch_loop_trains_the_student_and_leaves_the_teacher(tmp_path: Path) -> None:
    from green_callbacks.compress.torch_models import accuracy, distill

    torch.manual_seed(0)
    train_loader, val_loader = digits_loaders(batch_size=64, seed=0)
    teacher = DigitsCNN(channels=32)
    train(teacher, train_loader, 3)
    teacher.train()  # the user's mode, to be put back
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = DigitsCNN(channels=4)
    untrained = accuracy(student, val_loader)
    measure = Measurement(128, constant_power_trace(tmp_path, 40.0), 1, 0.05)

    result = distill(
        teacher, student, train_loader, eval_data=val_loader, epochs=3, temperature=3.0,
        alpha=0.7, optimizer=torch.optim.Adam(student.parameters(), lr=1e-2),
        max_accuracy_drop=0.2, measure=measure,
    )  # fmt: skip
    report = result.report
    assert report.accepted and result.model is student, report.verdict
    assert report.compressed.accuracy is not None and report.compressed.accuracy > untrained + 0.3
    assert report.original.params > 10 * report.compressed.params
    # the teacher learned nothing (batch-norm statistics included) and is back in training mode
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert teacher.training

    rejected = distill(
        teacher, DigitsCNN(channels=4), train_loader, eval_data=val_loader, epochs=1,
        max_accuracy_drop=-1.0, measure=measure,
    )  # fmt: skip
    assert not rejected.report.accepted and rejected.model is teacher
    with pytest.raises(CompressConfigError, match="epochs must be >= 1, got 0"):
        distill(teacher, student, train_loader, eval_data=val_loader, epochs=0)


def test_without_held_out_data_the_fit_still_ends_well(caplog: pytest.LogCaptureFixture) -> None:
    train_loader, _ = digits_loaders(batch_size=64, seed=0)
    module = Distillation(DigitsCNN(channels=4), DigitsCNN(channels=8))
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="green_callbacks.lightning.distillation"):
        trainer.fit(module, train_loader)
    assert trainer.state.finished and module.result is None
    assert "no validation loader, so no report; pass eval_data=" in caplog.text
