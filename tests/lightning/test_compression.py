"""Compression callbacks in real Lightning fits of the digits CNN: pruning steps, quantization."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
torch = pytest.importorskip("torch", reason="needs the 'lightning' extra")
pytest.importorskip("torch_pruning", reason="needs the 'prune' extra")
pytest.importorskip("sklearn", reason="needs the 'demo' extra")

from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from green_callbacks.compress import CompressConfigError, Measurement  # noqa: E402
from green_callbacks.compress.torch_models import count_params  # noqa: E402
from green_callbacks.lightning import StructuredPruning  # noqa: E402
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402


def fit(tmp_path: Path, pruning: Any, epochs: int) -> tuple[Any, Any]:
    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=64, seed=0)
    model = DigitsCNN(channels=16)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=CSVLogger(tmp_path, name="logs", version=0),
        callbacks=[pruning], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, train, val)
    return trainer, model


def measured(tmp_path: Path) -> dict[str, Any]:
    return {"measure": Measurement(64, constant_power_trace(tmp_path, 40.0), 1, 0.05)}


def convs(model: Any) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_pruning_in_steps_with_fine_tuning_is_kept_and_reported(tmp_path: Path) -> None:
    pruning = StructuredPruning(0.5, at_epochs=(0, 1), max_accuracy_drop=0.05, **measured(tmp_path))
    trainer, model = fit(tmp_path, pruning, epochs=4)

    assert convs(model) == [8, 16]  # 16 and 32 channels, halved in two steps
    optimized = sum(p.numel() for g in trainer.optimizers[0].param_groups for p in g["params"])
    assert optimized == count_params(model)  # the optimizer was rebuilt on the new parameters
    report = pruning.report
    assert report is not None and report.accepted, report and report.verdict
    assert report.compressed.params == count_params(model) < report.original.params
    assert report.compressed.j_per_sample > 0 and report.original.energy_kind == "replayed"
    saved = json.loads((tmp_path / "compression_report.json").read_text())
    assert saved["accepted"] is True and saved["ratios"]["params"] < 0.5
    logged = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text()
    assert "compress/j_per_sample_ratio" in logged and "compress/accepted" in logged


def test_a_rejected_pruning_puts_the_original_back(tmp_path: Path) -> None:
    pruning = StructuredPruning(0.9, at_epochs=(1,), max_accuracy_drop=0.0, **measured(tmp_path))
    _, model = fit(tmp_path, pruning, epochs=2)  # no epoch left to fine-tune 90% away

    report = pruning.report
    assert report is not None and not report.accepted
    assert "the original is kept" in report.verdict
    assert convs(model) == [16, 32]  # the original layers are back
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_a_schedule_past_the_last_epoch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CompressConfigError, match="raise max_epochs"):
        fit(tmp_path, StructuredPruning(0.5, at_epochs=(3,)), epochs=3)


@pytest.mark.parametrize("bar", [0.05, -1.0])  # -1: a bar no model can clear (+100 points)
def test_post_training_quantization_applies_only_what_it_judged(tmp_path: Path, bar: float) -> None:
    pytest.importorskip("torchao", reason="needs the 'quantize' extra")
    from green_callbacks.compress.torch_models import saved_size
    from green_callbacks.lightning import PostTrainingQuantization

    quantization = PostTrainingQuantization(
        "int8_weight_only", max_accuracy_drop=bar, report_path=tmp_path / "q.json",
        **measured(tmp_path),
    )  # fmt: skip
    _, model = fit(tmp_path, quantization, epochs=1)

    report = quantization.report
    assert report is not None and report.accepted is (bar > 0)
    assert report.compressed.size_bytes < report.original.size_bytes
    assert (saved_size(model)[0] == report.compressed.size_bytes) is report.accepted
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert (tmp_path / "q.json").exists()
