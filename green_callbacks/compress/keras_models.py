"""Keras 3 models (any backend): the report's figures, magnitude pruning and quantization.

No library prunes Keras 3 models (tensorflow-model-optimization works on
``tf_keras`` models only, through :mod:`~green_callbacks.compress.tf_keras_models`),
so magnitude pruning is done here: the smallest weights of each Dense and
convolution kernel are set to zero. That keeps the dense shapes, so the model
is not faster; it compresses better on disk (``gzip_bytes``), which the report
shows. Quantization is Keras's own ``model.quantize(mode)``.

The figures (:func:`compare_models`) also serve ``tf_keras`` models: they read
weights with ``get_weights()`` and find layers by class name.

Needs ``pip install 'green-callbacks[keras]'``.
"""

from __future__ import annotations

import io
import math
from typing import Any

from green_callbacks._optional import missing_extra
from green_callbacks.compress.measure import DEFAULT_MEASUREMENT, Measurement
from green_callbacks.compress.report import (
    Compressed,
    CompressionCost,
    CompressionReport,
    check_distillation,
    judge,
    stored_size,
)
from green_callbacks.errors import CompressConfigError, renamed, warn_renamed

try:
    import keras
    import numpy as np
except ImportError as err:  # pragma: no cover - exercised where keras is absent
    raise missing_extra(err, "keras", purpose="green_callbacks.compress.keras_models") from err


# -- figures -----------------------------------------------------------------


def check_model(model: Any) -> None:
    """A clear error unless ``model`` is a Keras 3 model (checked before any work is metered)."""
    if not isinstance(model, keras.Model):
        raise CompressConfigError(
            f"expected a Keras 3 model, got {type(model).__module__}.{type(model).__name__}; "
            "tf_keras (Keras 2) models are compressed with tensorflow-model-optimization "
            "through green_callbacks.compress.tf_keras_models"
        )


def copy_model(model: Any) -> Any:
    """A copy with the same architecture and weights, for inference."""
    check_model(model)
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def count_macs(model: Any) -> float | None:
    """Multiply-accumulates per sample of the Dense and convolution layers (None if none)."""
    total = 0.0
    for layer in _kernel_layers(model):
        kernel = tuple(layer.kernel.shape)
        if _is_a(layer, ("Dense",)):
            total += math.prod(kernel)
        else:  # a convolution: kernel MACs at every output position
            try:
                positions = math.prod(d or 1 for d in layer.output.shape[1:-1])
            except (AttributeError, ValueError):  # a layer never called symbolically
                return None
            total += math.prod(kernel) * positions
    return total or None


def saved_size(model: Any) -> tuple[int, int]:
    """Bytes of the model's weights saved as ``.npz``, raw and gzip-compressed. Units: bytes.

    The layers' variables only, in their own dtypes (int8 kernels stay int8):
    ``save_weights`` of a compiled model would also hold optimizer state.
    """
    buffer = io.BytesIO()
    np.savez(buffer, *model.get_weights())
    return stored_size(buffer.getvalue())


def accuracy(model: Any, x: Any, y: Any, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``x`` against integer labels ``y``."""
    predicted = np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)
    return float(np.mean(predicted == np.asarray(y).reshape(predicted.shape)))


@renamed(**{"x,y": "eval_data"})
def compare_models(
    original: Any,
    compressed: Any,
    *,
    technique: str,
    eval_data: tuple[Any, Any],
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
    cost: CompressionCost | None = None,
) -> CompressionReport:
    """Measure both models on this device (held-out ``eval_data=(x, y)``); judge the compressed
    (``cost``: what compressing took, for the payback)."""
    x, y = eval_data
    if len(x) < 1:
        raise CompressConfigError("the held-out x is empty")
    batch = inference_batch(x, measure.batch_size)
    costs = measure.compare({
        "original": lambda: original(batch, training=False),
        "compressed": lambda: compressed(batch, training=False),
    })  # fmt: skip
    figures = {
        name: costs[name].figures(
            params=nonzero_params(model), macs=count_macs(model), sizes=saved_size(model),
            accuracy=accuracy(model, x, y),
        )
        for name, model in (("original", original), ("compressed", compressed))
    }  # fmt: skip
    return judge(
        technique, figures["original"], figures["compressed"], max_accuracy_drop, cost=cost
    )


def inference_batch(x: Any, batch_size: int) -> Any:
    """``batch_size`` samples of ``x`` (repeated if ``x`` has fewer), for measuring inference."""
    x = np.asarray(x)
    return np.resize(x, (batch_size, *x.shape[1:]))


def nonzero_params(model: Any) -> int:
    """Parameters that are not zero (pruned weights do not count)."""
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


# -- magnitude pruning -------------------------------------------------------


def _is_a(layer: Any, names: tuple[str, ...]) -> bool:
    """Whether ``layer``'s class or a base of it has one of ``names`` (Keras 3 or tf_keras)."""
    return any(cls.__name__ in names for cls in type(layer).__mro__)


def _kernel_layers(model: Any) -> list[Any]:
    """Dense and convolution layers, nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        if _is_a(layer, ("Dense", "Conv1D", "Conv2D", "Conv3D")):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(_kernel_layers(layer))
    return found


def check_sparsity(sparsity: float) -> None:
    if not 0 <= sparsity < 1:
        raise CompressConfigError(
            f"sparsity is the share of weights zeroed, in [0, 1): got {sparsity}"
        )


def magnitude_masks(model: Any, sparsity: float) -> dict[str, Any]:
    """Per kernel, a 0/1 mask keeping its largest ``1 - sparsity`` share of weights by size."""
    check_sparsity(sparsity)
    masks = {}
    for layer in _kernel_layers(model):
        weights = np.abs(keras.ops.convert_to_numpy(layer.kernel))
        drop = int(weights.size * sparsity)
        if drop == 0:
            masks[layer.kernel.path] = np.ones_like(weights)
            continue
        threshold = np.partition(weights.ravel(), drop - 1)[drop - 1]
        masks[layer.kernel.path] = (weights > threshold).astype(weights.dtype)
    return masks


def apply_masks(model: Any, masks: dict[str, Any]) -> None:
    """Zero the masked weights of ``model``'s kernels."""
    for layer in _kernel_layers(model):
        mask = masks.get(layer.kernel.path)
        if mask is not None:
            layer.kernel.assign(keras.ops.convert_to_numpy(layer.kernel) * mask)


@renamed(**{"x,y": "eval_data"})
def prune_magnitude(
    model: Any,
    *,
    sparsity: float,
    eval_data: tuple[Any, Any],
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
) -> Compressed:
    """One-shot magnitude pruning of a copy of ``model`` (no fine-tuning), measured and judged."""
    check_sparsity(sparsity)
    check_model(model)
    with measure.metering() as spent:
        pruned = copy_model(model)
        apply_masks(pruned, magnitude_masks(pruned, sparsity))
    report = compare_models(
        model, pruned, technique=f"pruning (magnitude, {sparsity:.0%} of weights)",
        eval_data=eval_data, max_accuracy_drop=max_accuracy_drop, measure=measure,
        cost=spent[0],
    )  # fmt: skip
    return Compressed(pruned if report.accepted else model, report)


# -- quantization ------------------------------------------------------------


@renamed(**{"x,y": "eval_data"})
def quantize(
    model: Any,
    *,
    mode: str = "int8",
    eval_data: tuple[Any, Any],
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
) -> Compressed:
    """Keras's post-training ``model.quantize(mode)`` on a copy, measured and judged.

    Args:
        mode: ``"int8"``, ``"int4"`` or ``"float8"`` (Keras's modes that need no calibration data).
    """
    if mode not in ("int8", "int4", "float8"):
        raise CompressConfigError(f"mode must be 'int8', 'int4' or 'float8', got {mode!r}")
    check_model(model)
    with measure.metering() as spent:
        quantized = copy_model(model)
        quantized.quantize(mode)
    report = compare_models(
        model, quantized, technique=f"quantization (keras {mode})", eval_data=eval_data,
        max_accuracy_drop=max_accuracy_drop, measure=measure, cost=spent[0],
    )  # fmt: skip
    return Compressed(quantized if report.accepted else model, report)


# -- distillation ------------------------------------------------------------


@renamed(**{"x_val,y_val": "eval_data"})
def distill(
    teacher: Any,
    student: Any,
    x: Any,
    y: Any,
    *,
    eval_data: tuple[Any, Any],
    temperature: float = 2.0,
    alpha: float = 0.5,
    epochs: int = 5,
    batch_size: int = 32,
    optimizer: Any = "adam",
    callbacks: list[Any] | None = None,
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
    student_loss_weight: float | None = None,
) -> Compressed:
    """Train ``student`` on ``teacher``'s soft targets with Keras's ``Distiller``, then judge it.

    Args:
        teacher, student: Keras models returning logits; the teacher is frozen.
        x, y: training data with integer labels.
        eval_data: held-out ``(x, y)`` for the report.
        temperature: softens both models' logits (``LogitsDistillation(temperature)``).
        alpha: the soft targets' share of the loss, as in every framework here
            (Keras's ``student_loss_weight`` is ``1 - alpha``).
        epochs, batch_size, optimizer, callbacks: for the distillation ``fit``
            (pass ``EnergyCallback()`` to meter it).
        max_accuracy_drop: the student may lose this much accuracy against the teacher.
        measure: how inference is measured (:class:`Measurement`).
        student_loss_weight: deprecated; pass ``alpha = 1 - student_loss_weight``.

    Returns:
        The student if accepted, else the teacher, with the report.
    """
    if student_loss_weight is not None:
        warn_renamed("distill", "student_loss_weight", "alpha (= 1 - student_loss_weight)")
        alpha = 1.0 - student_loss_weight
    check_distillation(temperature, alpha)
    distiller = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=keras.distillation.LogitsDistillation(temperature=temperature),
        student_loss_weight=1.0 - alpha,
    )  # fmt: skip
    distiller.compile(
        optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    with measure.metering() as spent:  # the student's training: what the saving pays back
        distiller.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=callbacks, verbose=0)
    return distilled(
        distiller, eval_data=eval_data, max_accuracy_drop=max_accuracy_drop, measure=measure,
        cost=spent[0],
    )  # fmt: skip


@renamed(**{"x,y": "eval_data"})
def distilled(
    distiller: Any,
    *,
    eval_data: tuple[Any, Any],
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
    cost: CompressionCost | None = None,
) -> Compressed:
    """Judge a trained ``keras.distillation.Distiller``'s student against its teacher
    (``cost``: what training it took, if metered: :meth:`Measurement.metering`).

    Returns:
        The student if accepted, else the teacher, with the report.
    """
    teacher, student = getattr(distiller, "teacher", None), getattr(distiller, "student", None)
    if teacher is None or student is None:
        raise CompressConfigError(
            f"expected a keras.distillation.Distiller, got {type(distiller).__name__}: "
            "the report compares its student with its teacher"
        )
    temperatures = {getattr(loss, "temperature", None) for loss in distiller.distillation_losses}
    detail = ""
    if len(temperatures) == 1 and None not in temperatures:  # one temperature: name it
        detail = f", T={next(iter(temperatures)):g}"
    report = compare_models(
        teacher, student, technique=f"distillation (keras Distiller{detail})", eval_data=eval_data,
        max_accuracy_drop=max_accuracy_drop, measure=measure, cost=cost,
    )  # fmt: skip
    return Compressed(student if report.accepted else teacher, report)
