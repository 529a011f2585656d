"""Post-training int8 quantization of a real digits MLP with torchao: smaller, runs, judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="needs the 'torch' extra")
pytest.importorskip("torchao", reason="needs the 'quantize' extra")
pytest.importorskip("sklearn", reason="needs the 'demo' extra")

from green_callbacks.compress import CompressConfigError, Measurement  # noqa: E402
from green_callbacks.compress.torch_models import (  # noqa: E402
    quantize,
    quantize_linear,
)
from green_callbacks.lightning.demo import digits_loaders  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402
from tests.compress.test_torch_pruning import fit  # noqa: E402


def trained_mlp() -> tuple[Any, Any]:
    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=64, seed=0)
    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    fit(model, train, 4)
    return model, val


@pytest.mark.parametrize("method", ["int8_weight_only", "int8_dynamic"])
def test_quantized_copy_is_smaller_runs_and_is_judged(tmp_path: Path, method: str) -> None:
    model, val = trained_mlp()
    result = quantize(
        model, mode=method, eval_data=val, max_accuracy_drop=0.02,
        measure=Measurement(128, constant_power_trace(tmp_path, 40.0), 1, 0.05),
    )  # fmt: skip

    report = result.report
    assert report.accepted, report.verdict
    assert report.ratios()["size_bytes"] < 0.4  # int8 weights: about a quarter of float32
    assert report.accuracy_drop() is not None and report.accuracy_drop() <= 0.02
    assert result.model is not model and result.model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert isinstance(model[1].weight.data, torch.Tensor) and model[1].weight.dtype == torch.float32
    # whatever this CPU does with int8, the report says it when it costs more
    slower = report.ratios()["s_per_sample"] > 1 or report.ratios()["j_per_sample"] > 1
    assert bool(report.warnings) == slower


def test_an_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(CompressConfigError, match="int8_dynamic"):
        quantize_linear(torch.nn.Linear(2, 2), "fp4")
    with pytest.raises(CompressConfigError, match="int8_dynamic"):  # before any metering
        quantize(torch.nn.Linear(2, 2), mode="fp4", eval_data=[(torch.zeros(2, 2), torch.zeros(2))])
