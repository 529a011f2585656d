"""Structural pruning of a real digits CNN: smaller, still runs, consistent figures, verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="needs the 'torch' extra")
pytest.importorskip("torch_pruning", reason="needs the 'prune' extra")
pytest.importorskip("sklearn", reason="needs the 'demo' extra")

from green_callbacks.compress import CompressConfigError, Measurement  # noqa: E402
from green_callbacks.compress.torch_models import (  # noqa: E402
    count_macs,
    count_params,
    prune,
    prune_channels,
)
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402

POWER_W = 40.0


def trained(epochs: int = 4) -> tuple[Any, Any, Any]:
    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=64, seed=0)
    model = DigitsCNN(channels=16)
    fit(model, train, epochs)
    return model, train, val


def fit(model: Any, loader: Any, epochs: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


def test_pruning_half_the_channels_really_shrinks_the_model() -> None:
    model, _, val = trained(epochs=1)
    example = next(iter(val))[0][:1]
    params, macs = count_params(model), count_macs(model, example)
    prune_channels(model, example, 0.5)

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16]  # half of 16 and 32
    assert model.net[-1].out_features == 10  # the classes are kept
    assert count_params(model) < 0.5 * params and count_macs(model, example) < 0.5 * macs
    assert model(next(iter(val))[0]).shape[1] == 10  # and it still runs


def test_prune_measures_judges_and_keeps_the_pruned_model(tmp_path: Path) -> None:
    model, train, val = trained()
    result = prune(
        model, ratio=0.5, eval_data=val, max_accuracy_drop=0.05,
        fine_tune=lambda pruned: fit(pruned, train, 2),
        measure=Measurement(128, constant_power_trace(tmp_path, POWER_W), 2, 0.05),
    )  # fmt: skip

    report = result.report
    assert report.accepted and result.model is not model, report.verdict
    original, pruned = report.original, report.compressed
    assert pruned.params < original.params and pruned.size_bytes < original.size_bytes
    assert original.macs is not None and pruned.macs is not None and pruned.macs < original.macs
    # the figures agree with each other: a constant 40 W replay, so J = W x s
    for figures in (original, pruned):
        assert figures.j_per_sample == pytest.approx(POWER_W * figures.s_per_sample, rel=0.05)
        assert figures.energy_kind == "replayed" and figures.batch_size == 128
    assert report.ratios()["params"] == pytest.approx(pruned.params / original.params)
    assert report.accuracy_drop() == pytest.approx(original.accuracy - pruned.accuracy)
    assert count_params(model) == original.params  # the caller's model was not touched
    # pruning and fine-tuning were metered with the same replay: 40 W over their time
    assert report.cost is not None and report.cost.energy_kind == "replayed"
    assert report.cost.energy_j == pytest.approx(POWER_W * report.cost.duration_s, rel=0.05)
    saving = original.j_per_sample - pruned.j_per_sample  # a quarter of the MACs: it saves
    assert report.payback_samples() == pytest.approx(report.cost.energy_j / saving)


def test_a_pruned_model_that_loses_too_much_is_rejected_and_the_original_kept(
    tmp_path: Path,
) -> None:
    model, _, val = trained()
    result = prune(
        model, ratio=0.9, eval_data=val, max_accuracy_drop=0.01,
        measure=Measurement(64, constant_power_trace(tmp_path, POWER_W), 1, 0.01),
    )  # fmt: skip

    assert not result.report.accepted and result.model is model
    assert "rejected, the original is kept" in result.report.verdict


def test_a_ratio_outside_zero_to_one_is_refused() -> None:
    model = DigitsCNN(channels=4)
    with pytest.raises(CompressConfigError, match=r"in \(0, 1\): got 1.5"):
        prune_channels(model, torch.zeros(1, 1, 8, 8), 1.5)
    # checked before any work is metered (the estimate's warning would come first)
    with pytest.raises(CompressConfigError, match=r"in \(0, 1\): got 1.5"):
        prune(model, ratio=1.5, eval_data=[(torch.zeros(2, 1, 8, 8), torch.zeros(2))])
