"""Compression callbacks for Lightning: structural pruning and post-training quantization.

The surgery is in :mod:`green_callbacks.compress.torch_models` (torch-pruning's
dependency graph, so the model really shrinks; torchao int8); the verdict is
:func:`green_callbacks.compress.report.judge`'s, on figures measured here.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from green_callbacks.compress.measure import DEFAULT_MEASUREMENT, Measurement
from green_callbacks.compress.report import CompressionReport
from green_callbacks.compress.torch_models import (
    check_quantization_mode,
    compare_models,
    inference_batch,
    prune_channels,
    quantize_linear,
)
from green_callbacks.errors import CompressConfigError, renamed
from green_callbacks.lightning.callback import to_loggers

log = logging.getLogger(__name__)


class StructuredPruning(pl.Callback):
    """Removes ``ratio`` of the channels over the epochs in ``at_epochs``, fine-tuning between.

    Args:
        ratio: share of channels removed from each prunable layer by the end (0.5: half).
        at_epochs: after which training epochs (0-based) to prune; the ratio is
            reached in equal steps, and the epochs after each step fine-tune.
        max_accuracy_drop: at the end of ``fit``, if accuracy on the held-out
            set fell by more than this (absolute), the original model is put back.
        eval_data: held-out ``(inputs, labels)`` batches; default the
            trainer's validation loader.
        measure: how inference is measured for the report (:class:`Measurement`).
        report_path: where the JSON report goes (default
            ``<default_root_dir>/compression_report.json``).

    The report compares the model as it was just before the first step (the
    "original", trained for ``at_epochs[0] + 1`` epochs) with the pruned and
    fine-tuned one at the end of ``fit``; a rejected pruning puts that
    original back. Training an unpruned twin to the end would be a fairer
    baseline, at twice the energy: run the fit without this callback for that.
    After ``fit``, :attr:`report` holds the :class:`CompressionReport`; its
    figures go to the loggers as ``compress/...``. The optimizer is rebuilt
    (``configure_optimizers``) after each step, since the parameters changed.
    """

    @renamed(eval_loader="eval_data")
    def __init__(
        self,
        ratio: float,
        *,
        at_epochs: Sequence[int] = (0,),
        max_accuracy_drop: float | None = None,
        eval_data: Iterable[Any] | None = None,
        measure: Measurement = DEFAULT_MEASUREMENT,
        report_path: str | Path | None = None,
    ):
        if not 0 < ratio < 1:
            raise CompressConfigError(
                f"ratio is the share of channels removed, in (0, 1): got {ratio}"
            )
        if not at_epochs or any(e < 0 for e in at_epochs):
            raise CompressConfigError(f"at_epochs must list epochs >= 0, got {list(at_epochs)}")
        self.ratio = ratio
        self.at_epochs = tuple(sorted(set(at_epochs)))
        self.max_accuracy_drop = max_accuracy_drop
        self.eval_data = eval_data
        self.measure = measure
        self.report_path = None if report_path is None else Path(report_path)
        self.report: CompressionReport | None = None
        self._original: torch.nn.Module | None = None
        self._pruner: Any = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        last = self.at_epochs[-1]
        if trainer.max_epochs is not None and 0 <= trainer.max_epochs <= last:
            raise CompressConfigError(
                f"StructuredPruning prunes after epoch {last}, but max_epochs={trainer.max_epochs}"
                f"; raise max_epochs (leave epochs after the last step to fine-tune)"
            )

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch not in self.at_epochs:
            return
        if self._pruner is None:
            self._original = _detached_copy(pl_module)  # the model as trained up to now
            loader = trainer.train_dataloader
            example = inference_batch(loader, 1).to(pl_module.device)
            was_training = pl_module.training
            pl_module.eval()
            self._pruner = prune_channels(
                pl_module, example, self.ratio, iterative_steps=len(self.at_epochs)
            )
            pl_module.train(was_training)
        else:
            self._pruner.step()
        trainer.strategy.setup_optimizers(trainer)  # the parameters are new tensors
        step = self.at_epochs.index(trainer.current_epoch) + 1
        log.info("StructuredPruning: step %d of %d after epoch %d",
                 step, len(self.at_epochs), trainer.current_epoch)  # fmt: skip

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self._original is None or self._pruner is None:
            return
        original = self._original
        technique = f"pruning (torch-pruning, {self.ratio:.0%} of channels)"
        report = compare_models(
            original, pl_module, technique=technique, measure=self.measure,
            eval_data=_held_out(trainer, self.eval_data, type(self).__name__),
            max_accuracy_drop=self.max_accuracy_drop,
        )  # fmt: skip
        self.report = report
        if not report.accepted:
            for name, child in original.named_children():
                setattr(pl_module, name, child)
            trainer.strategy.setup_optimizers(trainer)
        _publish(trainer, report, self.report_path, type(self).__name__)


class PostTrainingQuantization(pl.Callback):
    """At the end of ``fit``, quantizes the module's Linear layers with torchao, if it pays.

    Args:
        mode: a key of :data:`~green_callbacks.compress.torch_models.QUANTIZATION_MODES`.
        max_accuracy_drop: the quantized model may lose this much accuracy
            (absolute) on the held-out set; beyond it the module stays float.
        eval_data: held-out ``(inputs, labels)`` batches; default the validation loader.
        measure: how inference is measured for the report (:class:`Measurement`).
        report_path: where the JSON report goes (default
            ``<default_root_dir>/compression_report.json``).

    A quantized copy is measured against the float module first; the module
    itself is quantized only if the copy is accepted. :attr:`report` holds the
    :class:`CompressionReport`, logged as ``compress/...``; its warnings say
    when int8 costs more here than float32.
    """

    @renamed(eval_loader="eval_data", method="mode")
    def __init__(
        self,
        mode: str = "int8_weight_only",
        *,
        max_accuracy_drop: float | None = None,
        eval_data: Iterable[Any] | None = None,
        measure: Measurement = DEFAULT_MEASUREMENT,
        report_path: str | Path | None = None,
    ):
        check_quantization_mode(mode)
        self.mode = mode
        self.max_accuracy_drop = max_accuracy_drop
        self.eval_data = eval_data
        self.measure = measure
        self.report_path = None if report_path is None else Path(report_path)
        self.report: CompressionReport | None = None

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        with self.measure.metering() as spent:
            candidate = quantize_linear(_detached_copy(pl_module).eval(), self.mode)
        report = compare_models(
            pl_module, candidate, technique=f"quantization (torchao {self.mode})",
            eval_data=_held_out(trainer, self.eval_data, type(self).__name__),
            max_accuracy_drop=self.max_accuracy_drop, measure=self.measure, cost=spent[0],
        )  # fmt: skip
        self.report = report
        if report.accepted:
            quantize_linear(pl_module, self.mode)
        _publish(trainer, report, self.report_path, type(self).__name__)


def _held_out(trainer: Any, loader: Iterable[Any] | None, user: str) -> Iterable[Any]:
    found = loader if loader is not None else trainer.val_dataloaders
    if found is None:
        raise CompressConfigError(
            f"{user} needs held-out data for its report: give the Trainer a validation loader "
            f"or {user}(eval_data=...)"
        )
    return found


def _publish(trainer: Any, report: CompressionReport, path: Path | None, user: str) -> None:
    """Write the report as JSON and log its figures (global rank zero only)."""
    path = path or Path(trainer.default_root_dir) / "compression_report.json"
    if trainer.is_global_zero:
        report.write_json(path)
        to_loggers(trainer, report.metrics())
    log.info("%s: %s (report in %s)", user, report.verdict, path)
    for warning in report.warnings:
        log.warning("%s: %s", user, warning)


def _detached_copy(module: Any) -> Any:
    """A deep copy of a LightningModule without its trainer (which must not be copied)."""
    trainer = module._trainer
    module._trainer = None
    try:
        return copy.deepcopy(module)
    finally:
        module._trainer = trainer
