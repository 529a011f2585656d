"""tfmot pruning, quantization-aware training and TFLite conversion of a tf_keras digits MLP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

tf_keras = pytest.importorskip("tf_keras", reason="needs the 'tfmot' extra")
pytest.importorskip("tensorflow_model_optimization", reason="needs the 'tfmot' extra")
np = pytest.importorskip("numpy")
datasets = pytest.importorskip("sklearn.datasets", reason="needs the 'demo' extra")

from green_callbacks.compress import CompressConfigError, Measurement  # noqa: E402
from green_callbacks.compress.tf_keras_models import (  # noqa: E402
    FineTune,
    TFLiteModel,
    prune_magnitude,
    quantize,
    quantize_aware,
    to_tflite,
)
from green_callbacks.testing import constant_power_trace  # noqa: E402

POWER_W = 40.0


def digits() -> tuple[Any, Any, Any, Any]:
    data = datasets.load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    return x[:1300], y[:1300], x[1300:], y[1300:]


@pytest.fixture(scope="module")
def trained() -> Any:
    """A compiled tf_keras MLP trained on digits (each test compresses a copy of it)."""
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input((64,)), tf_keras.layers.Dense(128, activation="relu"),
        tf_keras.layers.Dense(10),
    ])  # fmt: skip
    model.compile(
        optimizer=tf_keras.optimizers.Adam(1e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y, _, _ = digits()
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    return model


def measured(tmp_path: Path) -> dict[str, Any]:
    return {"measure": Measurement(64, constant_power_trace(tmp_path, POWER_W), 1, 0.05)}


def kernel_zero_share(model: Any) -> float:
    kernels = [w for w in model.get_weights() if w.ndim == 2]
    return sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)


def test_tfmot_pruning_reaches_its_sparsity_on_a_copy(trained: Any, tmp_path: Path) -> None:
    x, y, x_val, y_val = digits()
    before = [w.copy() for w in trained.get_weights()]
    result = prune_magnitude(
        trained, sparsity=0.6, x=x, y=y, eval_data=(x_val, y_val),
        fine_tune=FineTune(epochs=3), max_accuracy_drop=0.05, **measured(tmp_path),
    )  # fmt: skip

    report = result.report
    assert report.accepted and result.model is not trained, report.verdict
    assert kernel_zero_share(result.model) == pytest.approx(0.6, abs=0.01)
    assert not any("prune_low_magnitude" in layer.name for layer in result.model.layers)  # stripped
    assert all(np.array_equal(a, b) for a, b in zip(before, trained.get_weights()))
    ratios = report.ratios()
    assert ratios["params"] == pytest.approx(0.4, abs=0.02)  # nonzero parameters
    assert ratios["gzip_bytes"] < 0.9 and report.compressed.macs == report.original.macs
    for figures in (report.original, report.compressed):  # J = W x s on a constant trace
        assert figures.j_per_sample == pytest.approx(POWER_W * figures.s_per_sample, rel=0.05)
        assert figures.energy_kind == "replayed"


def test_rejected_pruning_gives_back_the_original(trained: Any, tmp_path: Path) -> None:
    x, y, x_val, y_val = digits()
    result = prune_magnitude(
        trained, sparsity=0.99, x=x[:200], y=y[:200], eval_data=(x_val, y_val),
        fine_tune=FineTune(epochs=1), max_accuracy_drop=0.0, **measured(tmp_path),
    )  # fmt: skip
    assert not result.report.accepted and result.model is trained
    assert "rejected, the original is kept" in result.report.verdict


@pytest.mark.parametrize("mode", ["dynamic", "float16", "int8"])
def test_post_training_tflite_quantization(trained: Any, tmp_path: Path, mode: str) -> None:
    x, _, x_val, y_val = digits()
    result = quantize(
        trained, mode=mode, eval_data=(x_val, y_val), calibration=x[:100], max_accuracy_drop=0.02,
        **measured(tmp_path),
    )  # fmt: skip

    report = result.report
    assert report.accepted and isinstance(result.model, TFLiteModel), report.verdict
    expected = {"dynamic": 0.35, "float16": 0.6, "int8": 0.45}[mode]  # headers, int32 biases
    assert report.ratios()["size_bytes"] < expected  # against the float32 flatbuffer
    assert report.compressed.params == report.original.params
    logits = result.model(x_val[:5])
    assert logits.shape == (5, 10)
    keras_logits = trained(x_val[:5], training=False).numpy()
    assert np.array_equal(logits.argmax(-1), keras_logits.argmax(-1))


def test_quantization_aware_training_converts_to_int8(trained: Any, tmp_path: Path) -> None:
    x, y, x_val, y_val = digits()
    result = quantize_aware(
        trained, x=x, y=y, eval_data=(x_val, y_val), fine_tune=FineTune(epochs=1),
        max_accuracy_drop=0.03, **measured(tmp_path),
    )  # fmt: skip

    report = result.report
    assert report.accepted and isinstance(result.model, TFLiteModel), report.verdict
    assert report.ratios()["size_bytes"] < 0.4
    assert "quantization-aware" in report.technique
    assert result.model.predict(x_val, batch_size=100).shape == (len(x_val), 10)


def test_bad_input_is_named(trained: Any) -> None:
    import keras

    x = np.zeros((4, 64), "float32")
    keras3 = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    with pytest.raises(CompressConfigError, match="expected a tf_keras .*keras_models"):
        quantize(keras3, eval_data=(x, np.zeros(4)))
    uncompiled = tf_keras.Sequential([tf_keras.layers.Input((64,)), tf_keras.layers.Dense(10)])
    with pytest.raises(CompressConfigError, match="compile the model first"):
        prune_magnitude(uncompiled, sparsity=0.5, x=x, y=np.zeros(4), eval_data=(x, np.zeros(4)))
    with pytest.raises(CompressConfigError, match="calibration=x_train"):
        to_tflite(trained, "int8")
    with pytest.raises(CompressConfigError, match="mode must be one of"):
        quantize(trained, mode="int4", eval_data=(x, np.zeros(4)))

    from green_callbacks.compress.keras_models import prune_magnitude as keras3_prune

    with pytest.raises(CompressConfigError, match="Keras 3 model.*tf_keras_models"):
        keras3_prune(trained, sparsity=0.5, eval_data=(x, np.zeros(4)))


def test_importing_the_module_leaves_the_keras_choice_alone() -> None:
    # tfmot sets TF_USE_LEGACY_KERAS=1 process-wide when imported; the module undoes that,
    # so the user's later tf.keras (and child processes) stay Keras 3.
    script = (
        "import os; import green_callbacks.compress.tf_keras_models; "
        "print(os.environ.get('TF_USE_LEGACY_KERAS'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "None"
