"""Magnitude pruning and quantization of a real Keras 3 digits MLP, measured and judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras", reason="needs the 'keras' extra")
np = pytest.importorskip("numpy")
datasets = pytest.importorskip("sklearn.datasets", reason="needs the 'demo' extra")

from green_callbacks.compress import CompressConfigError, Measurement  # noqa: E402
from green_callbacks.compress.keras_models import (  # noqa: E402
    prune_magnitude,
    quantize,
)
from green_callbacks.keras import MagnitudePruning  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402


def digits() -> tuple[Any, Any, Any, Any]:
    data = datasets.load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    return x[:1300], y[:1300], x[1300:], y[1300:]


def mlp(units: int = 128) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(10),
    ])  # fmt: skip
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def measured(tmp_path: Path) -> dict[str, Any]:
    return {"measure": Measurement(64, constant_power_trace(tmp_path, 40.0), 1, 0.05)}


def zero_share(model: Any) -> float:
    kernels = [w for w in model.get_weights() if w.ndim == 2]
    return sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)


def test_scheduled_magnitude_pruning_keeps_weights_zero_and_reports(tmp_path: Path) -> None:
    x, y, x_val, y_val = digits()
    model = mlp()
    pruning = MagnitudePruning(
        0.6, begin_epoch=0, end_epoch=1, eval_data=(x_val, y_val), max_accuracy_drop=0.05,
        report_path=tmp_path / "report.json", **measured(tmp_path),
    )  # fmt: skip
    model.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=[pruning])

    assert zero_share(model) == pytest.approx(0.6, abs=0.005)  # kept zero through fine-tuning
    report = pruning.report
    assert report is not None and report.accepted, report and report.verdict
    ratios = report.ratios()
    assert ratios["params"] == pytest.approx(0.4, abs=0.02)  # nonzero parameters
    assert ratios["gzip_bytes"] < 0.9 and report.compressed.macs == report.original.macs
    assert (tmp_path / "report.json").exists()


def test_rejected_pruning_puts_the_weights_back(tmp_path: Path) -> None:
    x, y, x_val, y_val = digits()
    model = mlp()
    pruning = MagnitudePruning(
        0.98, begin_epoch=1, end_epoch=1, eval_data=(x_val, y_val), max_accuracy_drop=0.0,
        **measured(tmp_path),
    )  # fmt: skip
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[pruning])

    assert pruning.report is not None and not pruning.report.accepted
    assert zero_share(model) < 0.01  # the weights from before pruning are back


def test_one_shot_functions_measure_and_judge(tmp_path: Path) -> None:
    x, y, x_val, y_val = digits()
    model = mlp()
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)

    pruned = prune_magnitude(model, sparsity=0.5, eval_data=(x_val, y_val), max_accuracy_drop=0.1,
                             **measured(tmp_path))  # fmt: skip
    assert pruned.report.accepted and pruned.model is not model
    assert zero_share(pruned.model) == pytest.approx(0.5, abs=0.005)
    assert zero_share(model) < 0.01

    quantized = quantize(model, mode="int8", eval_data=(x_val, y_val), max_accuracy_drop=0.02,
                         **measured(tmp_path))  # fmt: skip
    report = quantized.report
    assert report.accepted and report.accuracy_drop() is not None
    bigger = report.compressed.size_bytes > report.original.size_bytes
    assert any("larger on disk" in w for w in report.warnings) == bigger
    assert quantized.model(x_val[:3], training=False).shape == (3, 10)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(CompressConfigError, match=r"in \[0, 1\): got 1.0"):
        MagnitudePruning(1.0)
    with pytest.raises(CompressConfigError, match="mode must be"):
        quantize(mlp(), mode="int2", eval_data=(np.zeros((1, 64)), np.zeros(1)))


def test_distilled_student_is_judged_against_its_teacher(tmp_path: Path) -> None:
    from green_callbacks.compress.keras_models import distill
    from green_callbacks.keras import EnergyCallback

    x, y, x_val, y_val = digits()
    teacher = mlp()
    teacher.fit(x, y, epochs=3, batch_size=64, verbose=0)
    student = mlp(16)
    energy = EnergyCallback(meters=constant_power_trace(tmp_path, 40.0, name="fit.csv"))
    result = distill(
        teacher, student, x, y, eval_data=(x_val, y_val), temperature=3.0, epochs=5,
        optimizer=keras.optimizers.Adam(0.01),
        callbacks=[energy], max_accuracy_drop=0.2, **measured(tmp_path),
    )  # fmt: skip

    report = result.report
    assert report.compressed.params < report.original.params / 4
    assert report.accepted and result.model is student, report.verdict
    assert report.compressed.accuracy is not None and report.compressed.accuracy > 0.5
    assert energy.summary is not None and energy.summary["totals"]["energy_j"] > 0


def test_post_training_quantization_callback_quantizes_when_accepted(tmp_path: Path) -> None:
    from green_callbacks.keras import PostTrainingQuantization

    x, y, x_val, y_val = digits()
    model = mlp()
    quantization = PostTrainingQuantization(
        "int8", eval_data=(x_val, y_val), max_accuracy_drop=0.05, **measured(tmp_path)
    )
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[quantization])

    report = quantization.report
    assert report is not None and report.accepted, report and report.verdict
    assert all(layer.quantization_mode == "int8" for layer in model.layers)
    assert model(x_val[:2], training=False).shape == (2, 10)


def test_distillation_report_judges_a_distiller_fit(tmp_path: Path) -> None:
    from green_callbacks.keras import DistillationReport

    x, y, x_val, y_val = digits()
    teacher = mlp()
    teacher.fit(x, y, epochs=2, batch_size=64, verbose=0)
    student = mlp(16)
    distiller = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=keras.distillation.LogitsDistillation(temperature=4.0),
    )  # fmt: skip
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    report_cb = DistillationReport(
        eval_data=(x_val, y_val), max_accuracy_drop=-1.0,  # no student can pass: rejected
        report_path=tmp_path / "distill.json", **measured(tmp_path),
    )  # fmt: skip
    distiller.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[report_cb])

    assert report_cb.result is not None and report_cb.result.model is teacher
    report = report_cb.result.report
    assert report.technique == "distillation (keras Distiller, T=4)" and not report.accepted
    assert (tmp_path / "distill.json").exists()

    plain = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    plain.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(CompressConfigError, match="expected a keras.distillation.Distiller"):
        plain.fit(x[:64], y[:64], epochs=1, verbose=0,
                  callbacks=[DistillationReport(eval_data=(x_val, y_val))])  # fmt: skip
