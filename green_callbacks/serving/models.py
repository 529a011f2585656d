"""Turn a model and one example request into ``run_batch(n)``: the model on n requests.

Works with a torch module (Hugging Face models included: give the example as a
dict of tensors), a Keras model, or any callable on a NumPy batch. Batches are
the example repeated, built once per size, so only the model's work is timed.
A torch model runs under ``inference_mode`` and, on a GPU, synchronises before
returning, so the batch's window holds its work.

Example:
    >>> import numpy as np
    >>> run = batch_runner(lambda batch: batch.sum(axis=1), np.ones(3))
    >>> run(4).shape
    (4,)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from green_callbacks.serving.stream import ServingConfigError


def batch_runner(model: Any, example: Any) -> Callable[[int], Any]:
    """``run_batch(n)`` for :func:`~green_callbacks.serving.serve`.

    Args:
        model: a ``torch.nn.Module``, a Keras model, or a callable on a batch.
        example: one request without the batch axis: a tensor or array, or a
            mapping of them (a tokenizer's output for one text).

    Raises:
        ServingConfigError: the example is neither an array, a tensor nor a mapping of them.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return _torch_runner(torch, model, example)
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        ops = keras.ops
        return _cached(
            example, _repeat_numpy, lambda x: ops.convert_to_numpy(model(x, training=False))
        )
    if not callable(model):
        raise ServingConfigError(
            "the model must be a torch module, a Keras model or a callable, "
            f"got {type(model).__name__}"
        )
    return _cached(example, _repeat_numpy, model)


def _torch_runner(torch: Any, model: Any, example: Any) -> Callable[[int], Any]:
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    synchronize = torch.cuda.synchronize if device.type == "cuda" else None

    def repeat(value: Any, n: int) -> Any:
        tensor = torch.as_tensor(value).to(device)
        return tensor.unsqueeze(0).expand(n, *tensor.shape).contiguous()

    def call(batch: Any) -> Any:
        with torch.inference_mode():
            out = model(**batch) if isinstance(batch, Mapping) else model(batch)
        if synchronize is not None:
            synchronize(device)
        return out

    return _cached(example, repeat, call)


def _repeat_numpy(value: Any, n: int) -> Any:
    import numpy as np

    array = np.asarray(value)
    return np.broadcast_to(array, (n, *array.shape)).copy()


def _cached(
    example: Any, repeat: Callable[[Any, int], Any], call: Callable[[Any], Any]
) -> Callable[[int], Any]:
    if isinstance(example, (str, bytes)) or example is None:
        raise ServingConfigError(
            f"the example request must be an array, a tensor or a mapping of them, "
            f"got {type(example).__name__}; give one input without the batch axis"
        )
    batches: dict[int, Any] = {}

    def run(n: int) -> Any:
        batch = batches.get(n)
        if batch is None:
            if isinstance(example, Mapping):
                batch = {key: repeat(value, n) for key, value in example.items()}
            else:
                batch = repeat(example, n)
            batches[n] = batch
        return call(batch)

    return run
