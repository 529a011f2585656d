"""Distillation inside ``transformers.Trainer``, with the same loss and verdict as Lightning's.

``DistillationTrainer.compute_loss`` mixes a frozen teacher's logits with the
labels (``compress.torch_models.distillation_loss``); its ``report`` judges the
student against the teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from green_callbacks.compress.measure import DEFAULT_MEASUREMENT, Measurement
from green_callbacks.compress.report import Compressed, check_distillation
from green_callbacks.compress.torch_models import (
    distillation_loss,
    distilled,
)
from green_callbacks.errors import UsageError, renamed


class DistillationTrainer(Trainer):
    """A ``Trainer`` whose loss mixes the teacher's soft targets with the labels.

    Args:
        teacher: a trained ``transformers`` (or any) classification model taking
            the same inputs as the student and returning ``.logits``; frozen.
        temperature, alpha: as :func:`distillation_loss` (``alpha``: the soft share).
        args, kwargs: as ``Trainer``; ``model`` is the student.

    Evaluation reports the same mixed loss as ``eval_loss``. After ``train()``,
    :meth:`report` measures the student against the teacher.
    """

    def __init__(
        self, *args: Any, teacher: torch.nn.Module, temperature: float = 2.0, alpha: float = 0.5,
        **kwargs: Any,
    ):  # fmt: skip
        check_distillation(temperature, alpha)
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False).to(self.args.device)
        self.temperature, self.alpha = temperature, alpha

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        labels = inputs["labels"]
        outputs = model(**inputs)
        with torch.no_grad():
            teacher_logits = self.teacher(**inputs).logits
        loss = distillation_loss(
            outputs.logits, teacher_logits, labels, temperature=self.temperature, alpha=self.alpha
        )
        return (loss, outputs) if return_outputs else loss

    @renamed(dataset="eval_data")
    def report(
        self,
        eval_data: Sequence[dict[str, torch.Tensor]],
        *,
        input_key: str = "input_ids",
        max_accuracy_drop: float | None = None,
        measure: Measurement = DEFAULT_MEASUREMENT,
        report_path: str | Path | None = None,
    ) -> Compressed:
        """The student (``self.model``) measured against the teacher on ``eval_data``'s rows.

        Rows are dicts with ``input_key`` and ``labels``, as the Trainer takes them.
        The report's figures are logged (``compress/...``, into ``log_history``
        and every ``report_to`` logger) and the JSON is written to ``report_path``
        (default: ``<output_dir>/compression_report.json``).
        """
        if self.model is None:
            raise UsageError("DistillationTrainer.report() needs the student: pass model=")
        inputs = torch.stack([row[input_key] for row in eval_data])
        labels = torch.stack([torch.as_tensor(row["labels"]) for row in eval_data])
        data = torch.utils.data
        loader = data.DataLoader(data.TensorDataset(inputs, labels), batch_size=measure.batch_size)
        teacher, student = _Logits(self.teacher, input_key), _Logits(self.model, input_key)
        result = distilled(
            teacher, student, eval_data=loader, max_accuracy_drop=max_accuracy_drop,
            measure=measure,
        )  # fmt: skip
        kept = self.model if result.model is student else self.teacher
        self.log(result.report.metrics())
        if self.is_world_process_zero():
            result.report.write_json(
                report_path or Path(self.args.output_dir or ".") / "compression_report.json"
            )
        return Compressed(kept, result.report)


class _Logits(torch.nn.Module):
    """A ``transformers`` model as ``inputs -> logits``, for the report's measurements."""

    def __init__(self, model: torch.nn.Module, input_key: str):
        super().__init__()
        self.model, self.input_key = model, input_key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(**{self.input_key: x}).logits
        return logits
