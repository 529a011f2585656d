"""tf_keras (Keras 2) models: tfmot pruning and quantization-aware training, TFLite conversion.

tensorflow-model-optimization (tfmot) works on ``tf_keras`` models only; Keras 3
models take :mod:`~green_callbacks.compress.keras_models`. tfmot wraps a model's
layers before it is compiled, so its steps cannot be switched on inside a
``fit`` already running: each one here is a function that wraps a copy of a
trained, compiled model, fine-tunes it with the model's own loss and a fresh
optimizer of the model's kind (:class:`FineTune`), and measures it.

Quantized models are converted to TensorFlow Lite and run by the LiteRT
interpreter (``ai-edge-litert``), the runtime they are deployed on. They are
judged against the original converted to float32 TensorFlow Lite, so the
report shows what quantization changes, not what the runtime changes.

Needs ``pip install 'green-callbacks[tfmot]'``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from green_callbacks._optional import missing_extra
from green_callbacks.compress.keras_models import (
    accuracy,
    check_sparsity,
    compare_models,
    count_macs,
    inference_batch,
    nonzero_params,
)
from green_callbacks.compress.measure import DEFAULT_MEASUREMENT, Measurement
from green_callbacks.compress.report import (
    Compressed,
    CompressionCost,
    CompressionReport,
    judge,
    stored_size,
)
from green_callbacks.errors import CompressConfigError, renamed

_legacy_keras = os.environ.get("TF_USE_LEGACY_KERAS")
try:
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from ai_edge_litert.interpreter import Interpreter
except ImportError as err:  # pragma: no cover - exercised where the extra is absent
    raise missing_extra(err, "tfmot", purpose="green_callbacks.compress.tf_keras_models") from err
finally:
    # Importing tfmot sets TF_USE_LEGACY_KERAS=1 for the whole process, which would
    # turn the user's later `tf.keras` (and any child process's) into Keras 2.
    if _legacy_keras is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = _legacy_keras

TFLITE_MODES = ("dynamic", "float16", "int8")


@dataclass(frozen=True)
class FineTune:
    """How a tfmot step fine-tunes its wrapped copy of the model.

    The loss and the optimizer's kind and settings are the model's own
    (compile it first); the optimizer starts with a fresh state.

    Attributes:
        epochs: fine-tuning epochs.
        batch_size: samples per step.
        callbacks: ``tf_keras`` callbacks for the fine-tuning ``fit``.
    """

    epochs: int = 2
    batch_size: int = 32
    callbacks: tuple[Any, ...] = ()


DEFAULT_FINE_TUNE = FineTune()


# -- pruning -----------------------------------------------------------------


@renamed(**{"x_val,y_val": "eval_data"})
def prune_magnitude(
    model: Any,
    *,
    sparsity: float,
    x: Any,
    y: Any,
    eval_data: tuple[Any, Any],
    fine_tune: FineTune = DEFAULT_FINE_TUNE,
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
) -> Compressed:
    """tfmot ``prune_low_magnitude`` on a copy of ``model``, fine-tuned, stripped, measured, judged.

    The sparsity of every Dense and convolution kernel rises from 0 to
    ``sparsity`` over all fine-tuning epochs but the last, which trains at the
    target. Zeroed weights keep the dense shapes: the model is no faster, and
    the report says so; it compresses better on disk (``gzip_bytes``).

    Args:
        model: a compiled ``tf_keras`` model.
        sparsity: share of each kernel's weights zeroed, in [0, 1).
        x, y: fine-tuning data; ``eval_data``: held-out ``(x, y)`` for the report.
        fine_tune: epochs, batch size and callbacks of the fine-tuning.
        max_accuracy_drop: the pruned model may lose this much accuracy (absolute).
        measure: how inference is measured (:class:`Measurement`).

    Returns:
        The stripped pruned model if accepted, else ``model`` itself, with the report.
    """
    check_sparsity(sparsity)
    _check_model(model)
    sparsity_api = tfmot.sparsity.keras
    steps_per_epoch = math.ceil(len(x) / fine_tune.batch_size)
    ramp = steps_per_epoch * max(1, fine_tune.epochs - 1)
    frequency = max(1, ramp // 10)
    schedule = sparsity_api.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=frequency * (ramp // frequency), frequency=frequency,
    )  # fmt: skip
    with measure.metering() as spent:  # pruning and fine-tuning: what the saving pays back
        wrapped = sparsity_api.prune_low_magnitude(_copy(model), pruning_schedule=schedule)
        _fit(wrapped, model, x, y, fine_tune, [sparsity_api.UpdatePruningStep()])
        pruned = sparsity_api.strip_pruning(wrapped)
    report = compare_models(
        model, pruned, technique=f"pruning (tfmot low magnitude, {sparsity:.0%} of weights)",
        eval_data=eval_data, max_accuracy_drop=max_accuracy_drop, measure=measure,
        cost=spent[0],
    )  # fmt: skip
    return Compressed(pruned if report.accepted else model, report)


# -- TensorFlow Lite ---------------------------------------------------------


class TFLiteModel:
    """A TensorFlow Lite model run by the LiteRT interpreter, callable on a batch like a model.

    Args:
        content: the converted flatbuffer (:func:`to_tflite`).
    """

    def __init__(self, content: bytes):
        self.content = content
        self._interpreter = Interpreter(model_content=content)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._shape: tuple[int, ...] | None = None

    def __call__(self, batch: Any) -> Any:
        """The model's outputs for one batch (the interpreter is resized to its shape)."""
        batch = np.asarray(batch, dtype=self._input["dtype"])
        if batch.shape != self._shape:
            self._interpreter.resize_tensor_input(self._input["index"], batch.shape)
            self._interpreter.allocate_tensors()
            self._shape = batch.shape
        self._interpreter.set_tensor(self._input["index"], batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)

    def predict(self, x: Any, batch_size: int = 256, verbose: int = 0) -> Any:
        """Outputs for all of ``x``, in batches (``verbose`` is ignored: Keras's signature)."""
        x = np.asarray(x)
        return np.concatenate([self(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def to_tflite(model: Any, mode: str | None = None, *, calibration: Any = None) -> TFLiteModel:
    """Convert a ``tf_keras`` model to TensorFlow Lite.

    Args:
        mode: None for float32; ``"dynamic"``: int8 weights, float activations
            (also what a quantization-aware-trained model needs); ``"float16"``:
            float16 weights; ``"int8"``: int8 weights and activations, with
            activation ranges calibrated on ``calibration`` inputs.
        calibration: sample inputs (a few hundred training samples) for ``"int8"``.
    """
    _check_conversion(model, mode, calibration)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        converter.representative_dataset = lambda: _samples(calibration)
    return TFLiteModel(converter.convert())


def _check_conversion(model: Any, mode: str | None, calibration: Any) -> None:
    """A clear error for what :func:`to_tflite` cannot convert (before any work is metered)."""
    if mode is not None and mode not in TFLITE_MODES:
        raise CompressConfigError(f"mode must be None or one of {TFLITE_MODES}, got {mode!r}")
    _check_model(model, compiled=False)
    if mode == "int8" and calibration is None:
        raise CompressConfigError(
            "mode='int8' calibrates activation ranges on sample inputs: "
            "pass calibration=x_train[:200]"
        )


def _samples(x: Any, limit: int = 200) -> Iterator[list[Any]]:
    for sample in np.asarray(x, dtype=np.float32)[:limit]:
        yield [sample[None]]


@renamed(**{"x,y": "eval_data"})
def quantize(
    model: Any,
    *,
    mode: str = "dynamic",
    eval_data: tuple[Any, Any],
    calibration: Any = None,
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
) -> Compressed:
    """Post-training TensorFlow Lite quantization of ``model``, measured against float32 TFLite.

    Args:
        model: a ``tf_keras`` model.
        mode: ``"dynamic"``, ``"float16"`` or ``"int8"`` (:func:`to_tflite`).
        eval_data: held-out ``(x, y)`` for the report; ``calibration``: inputs for ``"int8"``.
        max_accuracy_drop, measure: as every compression step.

    Returns:
        The quantized :class:`TFLiteModel` if accepted, else ``model`` itself, with the report.
    """
    if mode not in TFLITE_MODES:
        raise CompressConfigError(f"mode must be one of {TFLITE_MODES}, got {mode!r}")
    _check_conversion(model, mode, calibration)
    with measure.metering() as spent:
        quantized = to_tflite(model, mode, calibration=calibration)
    report = _compare_tflite(
        model, quantized, f"quantization (TFLite post-training {mode})", eval_data,
        max_accuracy_drop, measure, spent[0],
    )  # fmt: skip
    return Compressed(quantized if report.accepted else model, report)


@renamed(**{"x_val,y_val": "eval_data"})
def quantize_aware(
    model: Any,
    *,
    x: Any,
    y: Any,
    eval_data: tuple[Any, Any],
    fine_tune: FineTune = DEFAULT_FINE_TUNE,
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
) -> Compressed:
    """tfmot quantization-aware training of a copy of ``model``, converted to int8 TFLite.

    Fake-quantization layers learn the int8 ranges during fine-tuning; the
    conversion keeps them. Judged against ``model`` as float32 TFLite.

    Args:
        model: a compiled Sequential or functional ``tf_keras`` model.
        x, y: fine-tuning data; ``eval_data``: held-out ``(x, y)`` for the report.
        fine_tune, max_accuracy_drop, measure: as :func:`prune_magnitude`.

    Returns:
        The int8 :class:`TFLiteModel` if accepted, else ``model`` itself, with the report.
    """
    _check_model(model)
    with measure.metering() as spent:  # the training and the conversion
        aware = tfmot.quantization.keras.quantize_model(_copy(model))
        _fit(aware, model, x, y, fine_tune, [])
        quantized = to_tflite(aware, "dynamic")
    report = _compare_tflite(
        model, quantized, "quantization (tfmot quantization-aware training, TFLite int8)",
        eval_data, max_accuracy_drop, measure, spent[0],
    )  # fmt: skip
    return Compressed(quantized if report.accepted else model, report)


def _compare_tflite(
    source: Any,
    quantized: TFLiteModel,
    technique: str,
    eval_data: tuple[Any, Any],
    max_accuracy_drop: float | None,
    measure: Measurement,
    cost: CompressionCost,
) -> CompressionReport:
    """Measure ``quantized`` against ``source`` as float32 TFLite, on the same runtime; ``cost``:
    what quantizing took (the float32 conversion for the comparison is not counted)."""
    x, y = eval_data
    if len(x) < 1:
        raise CompressConfigError("the held-out x is empty")
    original = to_tflite(source)
    batch = inference_batch(x, measure.batch_size)
    costs = measure.compare({
        "original": lambda: original(batch), "compressed": lambda: quantized(batch),
    })  # fmt: skip
    params, macs = nonzero_params(source), count_macs(source)
    figures = {
        name: costs[name].figures(
            params=params, macs=macs, sizes=stored_size(lite.content),
            accuracy=accuracy(lite, x, y),
        )
        for name, lite in (("original", original), ("compressed", quantized))
    }  # fmt: skip
    return judge(
        technique, figures["original"], figures["compressed"], max_accuracy_drop, cost=cost
    )


# -- shared ------------------------------------------------------------------


def _check_model(model: Any, *, compiled: bool = True) -> None:
    if not isinstance(model, tf_keras.Model):
        raise CompressConfigError(
            f"expected a tf_keras (Keras 2) model, got {type(model).__module__}."
            f"{type(model).__name__}; tensorflow-model-optimization works on tf_keras models "
            "only. Keras 3 models: green_callbacks.compress.keras_models"
        )
    if compiled and (getattr(model, "optimizer", None) is None or not model.loss):
        raise CompressConfigError(
            "compile the model first: the fine-tuning uses its loss and its optimizer's settings"
        )


def _copy(model: Any) -> Any:
    twin = tf_keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def _fit(
    wrapped: Any, source: Any, x: Any, y: Any, fine_tune: FineTune, callbacks: list[Any]
) -> None:
    """Fine-tune ``wrapped`` with ``source``'s loss and a fresh optimizer of its kind."""
    optimizer = type(source.optimizer).from_config(source.optimizer.get_config())
    wrapped.compile(optimizer=optimizer, loss=source.loss)
    wrapped.fit(
        x, y, epochs=fine_tune.epochs, batch_size=fine_tune.batch_size, verbose=0,
        callbacks=[*callbacks, *fine_tune.callbacks],
    )  # fmt: skip
