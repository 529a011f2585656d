"""Compression callbacks for Keras 3 (any backend): pruning, quantization, distillation's report.

tensorflow-model-optimization prunes ``tf_keras`` models only; these cover
Keras 3 models. The surgery is in :mod:`green_callbacks.compress.keras_models`;
the verdict is :func:`green_callbacks.compress.report.judge`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras

from green_callbacks.compress.keras_models import (
    apply_masks,
    check_sparsity,
    compare_models,
    copy_model,
    distilled,
    magnitude_masks,
    quantize,
)
from green_callbacks.compress.measure import DEFAULT_MEASUREMENT, Measurement
from green_callbacks.compress.report import (
    Compressed,
    CompressionReport,
)
from green_callbacks.errors import CompressConfigError, renamed

log = logging.getLogger(__name__)


class MagnitudePruning(keras.callbacks.Callback):  # type: ignore[misc]
    """Raises kernel sparsity to ``sparsity`` from ``begin_epoch`` to ``end_epoch``, then judges.

    Args:
        sparsity: share of each Dense/convolution kernel's weights zeroed by the end.
        begin_epoch, end_epoch: masks are recomputed at the end of each epoch
            in this range (0-based, inclusive), the sparsity rising linearly;
            the pruned weights stay zero through every later training step.
        eval_data: held-out ``(x, y)`` with integer labels, for the report.
        max_accuracy_drop: if accuracy fell by more than this (absolute), the
            weights from before the first step are put back.
        measure: how inference is measured for the report (:class:`Measurement`).
        report_path: where the JSON report goes (optional).

    Zeroed weights keep the dense shapes: the model is no faster and the
    report says so; it compresses better (``gzip_bytes``). After ``fit``,
    :attr:`report` holds the :class:`CompressionReport`, and its figures are
    in the ``logs`` of ``on_train_end`` as ``compress/...``.
    """

    @renamed(validation_data="eval_data")
    def __init__(
        self,
        sparsity: float = 0.5,
        *,
        begin_epoch: int = 0,
        end_epoch: int = 0,
        eval_data: tuple[Any, Any] | None = None,
        max_accuracy_drop: float | None = None,
        measure: Measurement = DEFAULT_MEASUREMENT,
        report_path: str | Path | None = None,
    ):
        super().__init__()
        check_sparsity(sparsity)
        if not 0 <= begin_epoch <= end_epoch:
            raise CompressConfigError(
                f"need 0 <= begin_epoch <= end_epoch, got {begin_epoch} and {end_epoch}"
            )
        self.sparsity = sparsity
        self.begin_epoch, self.end_epoch = begin_epoch, end_epoch
        self.eval_data = eval_data
        self.max_accuracy_drop = max_accuracy_drop
        self.measure = measure
        self.report_path = None if report_path is None else Path(report_path)
        self.report: CompressionReport | None = None
        self._masks: dict[str, Any] | None = None
        self._original: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._masks, self._original, self.report = None, None, None
        epochs = self.params.get("epochs") if self.params else None
        if epochs is not None and self.end_epoch >= epochs:
            raise CompressConfigError(
                f"MagnitudePruning ends at epoch {self.end_epoch}, but fit runs {epochs} epochs; "
                "lower end_epoch or raise epochs (leave epochs after it to fine-tune)"
            )

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._masks is not None:  # the optimizer step moved pruned weights: zero them again
            apply_masks(self.model, self._masks)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.begin_epoch <= epoch <= self.end_epoch:
            if self._original is None:
                self._original = copy_model(self.model)  # the model as trained up to now
            steps = self.end_epoch - self.begin_epoch + 1
            target = self.sparsity * (epoch - self.begin_epoch + 1) / steps
            self._masks = magnitude_masks(self.model, target)
            apply_masks(self.model, self._masks)
            log.info("MagnitudePruning: %.0f%% of kernel weights zeroed after epoch %d",
                     100 * target, epoch)  # fmt: skip

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._original is None:
            return
        if self.eval_data is None:
            raise CompressConfigError(
                "MagnitudePruning needs held-out data for its report: "
                "MagnitudePruning(eval_data=(x_val, y_val))"
            )
        report = compare_models(
            self._original, self.model, eval_data=self.eval_data,
            max_accuracy_drop=self.max_accuracy_drop, measure=self.measure,
            technique=f"pruning (magnitude, {self.sparsity:.0%} of weights)",
        )  # fmt: skip
        self.report = report
        if not report.accepted:
            self.model.set_weights(self._original.get_weights())
        _publish(report, self.report_path, logs, type(self).__name__)


class PostTrainingQuantization(keras.callbacks.Callback):  # type: ignore[misc]
    """When ``fit`` ends, quantizes the model with ``model.quantize(mode)``, if it pays.

    Args:
        mode: ``"int8"``, ``"int4"`` or ``"float8"``.
        eval_data: held-out ``(x, y)`` with integer labels, for the report.
        max_accuracy_drop: the quantized model may lose this much accuracy
            (absolute); beyond it the model stays as it is.
        measure: how inference is measured for the report (:class:`Measurement`).
        report_path: where the JSON report goes (optional).

    A quantized copy is measured against the model first; the model itself
    is quantized only if the copy is accepted. :attr:`report` holds the
    :class:`CompressionReport`; its figures go into the ``logs`` of
    ``on_train_end`` as ``compress/...``.
    """

    @renamed(validation_data="eval_data")
    def __init__(
        self,
        mode: str = "int8",
        *,
        eval_data: tuple[Any, Any],
        max_accuracy_drop: float | None = None,
        measure: Measurement = DEFAULT_MEASUREMENT,
        report_path: str | Path | None = None,
    ):
        super().__init__()
        self.mode = mode
        self.eval_data = eval_data
        self.max_accuracy_drop = max_accuracy_drop
        self.measure = measure
        self.report_path = None if report_path is None else Path(report_path)
        self.report: CompressionReport | None = None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        result = quantize(
            self.model, mode=self.mode, eval_data=self.eval_data,
            max_accuracy_drop=self.max_accuracy_drop, measure=self.measure,
        )  # fmt: skip
        self.report = result.report
        if result.report.accepted:
            self.model.quantize(self.mode)
        _publish(result.report, self.report_path, logs, type(self).__name__)


class DistillationReport(keras.callbacks.Callback):  # type: ignore[misc]
    """For the ``fit`` of a ``keras.distillation.Distiller``: when it ends, judges the student.

    Args:
        eval_data: held-out ``(x, y)`` with integer labels.
        max_accuracy_drop: the student may lose this much accuracy against the teacher.
        measure: how inference is measured for the report (:class:`Measurement`).
        report_path: where the JSON report goes (optional).

    After ``fit``, :attr:`result` holds the model to keep (the student if
    accepted, else the teacher) and the :class:`CompressionReport`; its
    figures are in the ``logs`` of ``on_train_end`` as ``compress/...``.
    :func:`green_callbacks.compress.keras_models.distill` is the same in one call.
    """

    @renamed(validation_data="eval_data")
    def __init__(
        self,
        *,
        eval_data: tuple[Any, Any],
        max_accuracy_drop: float | None = None,
        measure: Measurement = DEFAULT_MEASUREMENT,
        report_path: str | Path | None = None,
    ):
        super().__init__()
        self.eval_data = eval_data
        self.max_accuracy_drop = max_accuracy_drop
        self.measure = measure
        self.report_path = None if report_path is None else Path(report_path)
        self.result: Compressed | None = None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.result = distilled(
            self.model,
            eval_data=self.eval_data,
            max_accuracy_drop=self.max_accuracy_drop,
            measure=self.measure,
        )
        _publish(self.result.report, self.report_path, logs, type(self).__name__)


def _publish(
    report: CompressionReport, path: Path | None, logs: dict[str, Any] | None, user: str
) -> None:
    """Write the report as JSON (if asked) and put its figures in the logs."""
    if path is not None:
        report.write_json(path)
    if logs is not None:
        logs.update(report.metrics())
    log.info("%s: %s", user, report.verdict)
    for warning in report.warnings:
        log.warning("%s: %s", user, warning)
