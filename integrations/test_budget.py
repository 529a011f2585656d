"""An energy budget on real training: the run stops before it would exceed the budget.

Digits (bundled with scikit-learn), the machine's own meters (the CPU estimate
here, RAPL or NVML where present), real time: the budget is set from a
measured first epoch to about three and a half epochs, so the stop must come
from the prediction, not from a scripted figure.
"""

from __future__ import annotations

from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
pytest.importorskip("sklearn", reason="needs the 'demo' extra")

import torch  # noqa: E402

from green_callbacks.core import keys  # noqa: E402
from green_callbacks.lightning import EnergyCallback, EnergyEarlyStopping  # noqa: E402
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders  # noqa: E402
from green_callbacks.policies import StopReason  # noqa: E402

MAX_EPOCHS = 30


def fit(epochs: int, callbacks: list[Any]) -> Any:
    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=64, seed=0)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(DigitsCNN(channels=8), train, val)
    return trainer


# "auto" meters: on a machine without sensors they warn that the figures are an estimate.
@pytest.mark.filterwarnings("ignore::green_callbacks.errors.EnergySourceWarning")
def test_a_budgeted_run_stops_before_exceeding_its_budget() -> None:
    probe = EnergyCallback()
    fit(2, [probe])
    assert probe.summary is not None
    epoch_j = probe.summary["totals"]["energy_j"] / 2
    budget_j = 3.5 * epoch_j

    energy = EnergyCallback()
    stopper = EnergyEarlyStopping(monitor="val_acc", mode="max", budget_j=budget_j)
    trainer = fit(MAX_EPOCHS, [energy, stopper])

    assert energy.summary is not None
    # The policy's promise: no epoch starts that is predicted to overrun, so the run's total
    # when it stops is within the budget. The summary adds the teardown after the stop (a
    # few tenths of a joule here), which no epoch-level policy governs.
    total_j = float(trainer.callback_metrics[keys.TOTAL_J])
    assert stopper.decision is not None and stopper.decision.reason is StopReason.BUDGET
    assert total_j <= budget_j, f"spent {total_j:.1f} J of a {budget_j:.1f} J budget"
    assert energy.summary["totals"]["energy_j"] >= total_j
    assert 2 <= trainer.current_epoch < MAX_EPOCHS
    assert "budget" in stopper.decision.message
    # the saved-energy estimate covers the epochs it did not run, labelled as an estimate
    assert float(trainer.callback_metrics[keys.STOP_SAVED_ESTIMATE_J]) > 0
