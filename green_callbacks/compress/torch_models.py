"""PyTorch models: the report's figures, and structural pruning with torch-pruning.

Needs ``pip install 'green-callbacks[torch]'`` (and ``[prune]`` for pruning).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from green_callbacks._optional import missing_extra, require
from green_callbacks.compress.measure import DEFAULT_MEASUREMENT, Measurement
from green_callbacks.compress.report import (
    Compressed,
    CompressionCost,
    CompressionReport,
    check_distillation,
    judge,
    stored_size,
)
from green_callbacks.errors import CompressConfigError, renamed

try:
    import torch
except ImportError as err:  # pragma: no cover - exercised where torch is absent
    raise missing_extra(err, "torch", purpose="green_callbacks.compress.torch_models") from err


# -- figures -----------------------------------------------------------------


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, example: torch.Tensor) -> float | None:
    """Multiply-accumulates of one sample's forward pass (None where ops cannot be counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with torch.inference_mode(), counter:
            model(example[:1])
    except Exception:  # quantized kernels without a flop formula
        return None
    flops = counter.get_total_flops()
    return flops / 2 if flops else None


def saved_size(model: torch.nn.Module) -> tuple[int, int]:
    """Bytes of ``torch.save(model.state_dict())``, raw and gzip-compressed. Units: bytes."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return stored_size(buffer.getvalue())


def accuracy(model: torch.nn.Module, loader: Iterable[Any]) -> float:
    """Top-1 accuracy over ``loader``'s ``(inputs, labels)`` batches."""
    device = _device(model)
    right = total = 0
    model.eval()
    with torch.inference_mode():
        for inputs, labels in loader:
            predicted = model(inputs.to(device)).argmax(dim=-1).cpu()
            right += int((predicted == labels).sum())
            total += len(labels)
    if total == 0:
        raise CompressConfigError("the held-out loader gave no samples to measure accuracy on")
    return right / total


def inference_batch(loader: Iterable[Any], batch_size: int) -> torch.Tensor:
    """``batch_size`` inputs from ``loader``'s batches (cycled if it has fewer)."""
    inputs: list[torch.Tensor] = []
    have = 0
    while have < batch_size:
        before = have
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            inputs.append(x)
            have += len(x)
            if have >= batch_size:
                break
        if have == before:
            raise CompressConfigError("the held-out loader is empty")
    return torch.cat(inputs)[:batch_size]


@renamed(eval_loader="eval_data")
def compare_models(
    original: torch.nn.Module,
    compressed: torch.nn.Module,
    *,
    technique: str,
    eval_data: Iterable[Any],
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
    cost: CompressionCost | None = None,
) -> CompressionReport:
    """Measure both models on this device and judge the compressed one.

    Inference energy and time per sample are measured at ``measure.batch_size`` in
    interleaved rounds (:func:`~green_callbacks.compress.measure.compare_inference`);
    accuracy on ``eval_data``. ``cost``: what compressing took, for the payback.
    """
    batch = inference_batch(eval_data, measure.batch_size)
    runs = {"original": _runner(original, batch), "compressed": _runner(compressed, batch)}
    costs = measure.compare(runs)
    figures = {
        name: costs[name].figures(
            params=count_params(model), macs=count_macs(model, batch.to(_device(model))),
            sizes=saved_size(model), accuracy=accuracy(model, eval_data),
        )
        for name, model in (("original", original), ("compressed", compressed))
    }  # fmt: skip
    return judge(
        technique, figures["original"], figures["compressed"], max_accuracy_drop, cost=cost
    )


def _runner(model: torch.nn.Module, batch: torch.Tensor) -> Callable[[], None]:
    device = _device(model)
    x = batch.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(x)
        if sync is not None:
            sync()

    return run


def _device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


# -- structural pruning --------------------------------------------------------


def prune_channels(
    model: torch.nn.Module,
    example_inputs: torch.Tensor,
    ratio: float,
    *,
    ignored_layers: Sequence[torch.nn.Module] | None = None,
    iterative_steps: int = 1,
) -> Any:
    """Remove ``ratio`` of the channels of every prunable layer, in place; returns the pruner.

    Structural: torch-pruning follows the dependency graph, so coupled layers
    (a convolution and the batch norm and layer after it) shrink together and
    the model is really smaller. The output layer is left whole unless
    ``ignored_layers`` says otherwise. With ``iterative_steps > 1``, call
    ``pruner.step()`` again for each further step (the callbacks fine-tune
    in between).
    """
    check_ratio(ratio)
    tp = require("torch_pruning", "prune", purpose="Structural pruning")
    ignored = list(ignored_layers) if ignored_layers is not None else _output_layers(model)
    pruner = tp.pruner.MetaPruner(
        model, example_inputs, importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio, iterative_steps=iterative_steps, ignored_layers=ignored,
    )  # fmt: skip
    pruner.step()
    return pruner


def _output_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The last Linear (or convolution): its outputs are the model's classes."""
    layers: list[torch.nn.Module] = [
        m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
    ]
    return layers[-1:]


def check_ratio(ratio: float) -> None:
    """A clear error unless ``ratio`` is a share of channels in (0, 1)."""
    if not 0 < ratio < 1:
        raise CompressConfigError(f"ratio is the share of channels removed, in (0, 1): got {ratio}")


@renamed(eval_loader="eval_data", finetune="fine_tune")
def prune(
    model: torch.nn.Module,
    *,
    ratio: float,
    eval_data: Iterable[Any],
    max_accuracy_drop: float | None = None,
    fine_tune: Callable[[torch.nn.Module], Any] | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
) -> Compressed:
    """One-shot structural pruning of a copy of ``model``, measured and judged.

    Args:
        model: left untouched; a copy is pruned.
        ratio: share of channels removed from each prunable layer (0.5: half).
        eval_data: held-out ``(inputs, labels)`` batches for accuracy and inference.
        max_accuracy_drop: the largest accuracy loss allowed (absolute: 0.02 is
            two points); beyond it the original is returned.
        fine_tune: called with the pruned copy to recover accuracy before judging.
        measure: how inference is measured (:class:`Measurement`).
    """
    check_ratio(ratio)  # before any work is metered
    with measure.metering() as spent:  # pruning and fine-tuning: what the saving pays back
        pruned = copy.deepcopy(model)
        pruned.eval()
        prune_channels(pruned, inference_batch(eval_data, 1).to(_device(pruned)), ratio)
        if fine_tune is not None:
            fine_tune(pruned)
    report = compare_models(
        model, pruned, technique=f"pruning (torch-pruning, {ratio:.0%} of channels)",
        eval_data=eval_data, max_accuracy_drop=max_accuracy_drop, measure=measure,
        cost=spent[0],
    )  # fmt: skip
    return Compressed(pruned if report.accepted else model, report)


# -- post-training quantization --------------------------------------------------

QUANTIZATION_MODES = {
    "int8_weight_only": "Int8WeightOnlyConfig",
    "int8_dynamic": "Int8DynamicActivationInt8WeightConfig",
}
"""torchao configurations by name: int8 weights; int8 weights and int8 dynamic activations."""


def check_quantization_mode(mode: str) -> None:
    if mode not in QUANTIZATION_MODES:
        raise CompressConfigError(
            f"unknown quantization mode {mode!r}; choose one of {sorted(QUANTIZATION_MODES)}"
        )


@renamed(method="mode")
def quantize_linear(model: torch.nn.Module, mode: str = "int8_weight_only") -> torch.nn.Module:
    """Quantize the Linear layers of ``model`` in place with torchao; returns it.

    ``torch.ao.quantization``'s eager ``quantize``/``quantize_dynamic`` are
    deprecated in PyTorch 2.x in favour of torchao, which is what this uses.
    """
    check_quantization_mode(mode)
    quantization = require("torchao.quantization", "quantize", purpose="Quantization")
    config = getattr(quantization, QUANTIZATION_MODES[mode])()
    quantization.quantize_(model, config)
    return model


@renamed(eval_loader="eval_data", method="mode")
def quantize(
    model: torch.nn.Module,
    *,
    mode: str = "int8_weight_only",
    eval_data: Iterable[Any],
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
) -> Compressed:
    """Post-training quantization of a copy of ``model``, measured and judged.

    Args:
        model: left untouched; a copy is quantized.
        mode: a key of :data:`QUANTIZATION_MODES`.
        eval_data, max_accuracy_drop, measure: as :func:`prune`.

    The report warns when the quantized model is slower or costs more energy
    per sample on this device: int8 kernels are not faster everywhere (on a
    CPU without them, dynamic int8 activations can be several times slower).
    """
    check_quantization_mode(mode)  # before any work is metered
    with measure.metering() as spent:
        quantized = quantize_linear(copy.deepcopy(model).eval(), mode)
    report = compare_models(
        model, quantized, technique=f"quantization (torchao {mode})", eval_data=eval_data,
        max_accuracy_drop=max_accuracy_drop, measure=measure, cost=spent[0],
    )  # fmt: skip
    return Compressed(quantized if report.accepted else model, report)


# -- distillation ----------------------------------------------------------------


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """``alpha`` x soft-target KL at ``temperature`` (scaled by T^2) + (1 - alpha) x cross-entropy.

    The T^2 factor keeps the soft term's gradients on the scale of the hard
    one as the temperature changes (Hinton et al., 2015).
    """
    check_distillation(temperature, alpha)
    functional = torch.nn.functional
    soft = functional.kl_div(
        functional.log_softmax(student_logits / temperature, dim=-1),
        functional.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean", log_target=True,
    ) * temperature**2  # fmt: skip
    return alpha * soft + (1 - alpha) * functional.cross_entropy(student_logits, labels)


@renamed(eval_loader="eval_data")
def distilled(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    *,
    eval_data: Iterable[Any],
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
    cost: CompressionCost | None = None,
) -> Compressed:
    """Judge a student trained by distillation against its teacher (the original);
    ``cost``: what training it took, if it was metered (:meth:`Measurement.metering`)."""
    report = compare_models(
        teacher, student, technique="distillation", eval_data=eval_data,
        max_accuracy_drop=max_accuracy_drop, measure=measure, cost=cost,
    )  # fmt: skip
    return Compressed(student if report.accepted else teacher, report)


@renamed(eval_loader="eval_data")
def distill(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    train_loader: Iterable[Any],
    *,
    eval_data: Iterable[Any],
    epochs: int = 5,
    optimizer: torch.optim.Optimizer | None = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    max_accuracy_drop: float | None = None,
    measure: Measurement = DEFAULT_MEASUREMENT,
) -> Compressed:
    """Train ``student`` on a frozen ``teacher``'s soft targets and labels, then judge it.

    A plain training loop over ``train_loader``'s ``(inputs, labels)`` batches
    with :func:`distillation_loss` (Lightning users: ``lightning.Distillation``).
    The teacher runs in eval mode without gradients; its mode is put back after.
    The student is left in eval mode, ready for inference.

    Args:
        epochs: passes over ``train_loader``.
        optimizer: over the student's parameters (default: Adam, learning rate 1e-3).
        temperature, alpha: as :func:`distillation_loss`.
        eval_data, max_accuracy_drop, measure: as :func:`distilled`.

    Returns:
        The student if accepted, else the teacher, with the report.
    """
    check_distillation(temperature, alpha)
    if epochs < 1:
        raise CompressConfigError(f"epochs must be >= 1, got {epochs}")
    optimizer = optimizer or torch.optim.Adam(student.parameters(), lr=1e-3)
    device, teacher_was_training = _device(student), teacher.training
    teacher.eval()
    student.train()
    try:
        with measure.metering() as spent:  # the student's training: what the saving pays back
            for _ in range(epochs):
                for inputs, labels in train_loader:
                    inputs, labels = inputs.to(device), labels.to(device)
                    with torch.no_grad():
                        teacher_logits = teacher(inputs)
                    loss = distillation_loss(
                        student(inputs), teacher_logits, labels, temperature=temperature,
                        alpha=alpha,
                    )  # fmt: skip
                    optimizer.zero_grad()
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
        return distilled(
            teacher, student, eval_data=eval_data, max_accuracy_drop=max_accuracy_drop,
            measure=measure, cost=spent[0],
        )  # fmt: skip
    finally:
        teacher.train(teacher_was_training)
