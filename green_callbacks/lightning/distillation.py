"""Distillation for Lightning: a student trained on a frozen teacher's soft targets, then judged.

The loss is :func:`green_callbacks.compress.torch_models.distillation_loss`;
the verdict, student against teacher, :func:`~green_callbacks.compress.torch_models.distilled`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from green_callbacks.compress.measure import DEFAULT_MEASUREMENT, Measurement
from green_callbacks.compress.report import Compressed, check_distillation
from green_callbacks.compress.torch_models import (
    distillation_loss,
    distilled,
)
from green_callbacks.errors import renamed
from green_callbacks.lightning.compression import _publish

log = logging.getLogger(__name__)


class Distillation(pl.LightningModule):
    """Trains ``student`` (a LightningModule) on a frozen ``teacher``'s soft targets.

    Args:
        student: the model to train; its ``configure_optimizers``,
            ``validation_step`` and ``test_step`` are used as they are.
        teacher: a trained ``torch.nn.Module`` returning logits; frozen (eval mode, no gradients).
        temperature: softens both distributions (higher: more of the teacher's "dark knowledge").
        alpha: weight of the soft-target term; ``1 - alpha`` goes to the labels.
        max_accuracy_drop: the student may lose this much accuracy against the teacher.
        eval_data: held-out data for the report (default: the validation loader).
        measure: how inference is measured for the report (:class:`Measurement`).
        report_path: where the JSON report goes (default:
            ``<default_root_dir>/compression_report.json``).

    Training batches are ``(inputs, labels)``; logs ``distill_loss``. When
    ``fit`` ends, the student is measured against the teacher: the report's
    figures go to the loggers as ``compress/...``, the JSON is written, and
    :attr:`result` holds the model to keep (the teacher if the student lost
    more than ``max_accuracy_drop``). :meth:`report` measures again on other data.
    """

    @renamed(eval_loader="eval_data")
    def __init__(
        self,
        student: pl.LightningModule,
        teacher: torch.nn.Module,
        *,
        temperature: float = 2.0,
        alpha: float = 0.5,
        max_accuracy_drop: float | None = None,
        eval_data: Iterable[Any] | None = None,
        measure: Measurement = DEFAULT_MEASUREMENT,
        report_path: str | Path | None = None,
    ):
        super().__init__()
        check_distillation(temperature, alpha)
        self.student = student
        # the student's own self.log calls (in its validation_step) go through this module
        student.log, student.log_dict = self.log, self.log_dict  # type: ignore[method-assign]
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha
        self.max_accuracy_drop, self.eval_data = max_accuracy_drop, eval_data
        self.measure = measure
        self.report_path = None if report_path is None else Path(report_path)
        self.result: Compressed | None = None

    def forward(self, x: Any) -> Any:
        return self.student(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        loss = distillation_loss(
            self.student(x), teacher_logits, y, temperature=self.temperature, alpha=self.alpha
        )
        self.log("distill_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return self.student.validation_step(batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        return self.student.test_step(batch, batch_idx)

    def configure_optimizers(self) -> Any:
        return self.student.configure_optimizers()

    def train(self, mode: bool = True) -> Distillation:
        super().train(mode)
        self.teacher.eval()  # stays frozen: dropout off, batch-norm statistics fixed
        return self

    def on_fit_end(self) -> None:
        trainer = self.trainer
        loader = self.eval_data if self.eval_data is not None else trainer.val_dataloaders
        if loader is None:
            log.warning("Distillation: no validation loader, so no report; pass eval_data=")
            return
        self.result = self.report(
            loader, max_accuracy_drop=self.max_accuracy_drop, measure=self.measure
        )
        _publish(trainer, self.result.report, self.report_path, type(self).__name__)

    @renamed(eval_loader="eval_data")
    def report(
        self,
        eval_data: Iterable[Any],
        *,
        max_accuracy_drop: float | None = None,
        measure: Measurement = DEFAULT_MEASUREMENT,
    ) -> Compressed:
        """The student measured against the teacher; ``.model`` is the one to keep."""
        return distilled(
            self.teacher, self.student, eval_data=eval_data,
            max_accuracy_drop=max_accuracy_drop, measure=measure,
        )  # fmt: skip
