"""Two processes search one Optuna study through a shared SQLite storage under one budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="needs the 'optuna' extra")

from green_callbacks.optuna import ENERGY_J, spent_j  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402

SCRIPT = Path(__file__).with_name("hpo_run.py")
POWER_W = 50.0
BUDGET_J = 200.0


def test_two_processes_share_one_budget_overrunning_by_at_most_a_trial_each(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="shared", storage=storage)
    trace = constant_power_trace(tmp_path, POWER_W)
    workers = [
        subprocess.Popen([sys.executable, str(SCRIPT), storage, trace, str(BUDGET_J)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        assert "EnergyBudget stopped the study" in err

    study = optuna.load_study(study_name="shared", storage=storage)
    energies = [t.user_attrs[ENERGY_J] for t in study.trials]
    assert all(e > 0 for e in energies) and len(energies) >= 4
    total = spent_j(study)
    assert total == pytest.approx(sum(energies))  # every trial counted once
    assert total <= BUDGET_J + 2 * max(energies)  # at most one trial over, per process
    assert total > BUDGET_J - 2 * max(energies)  # and the budget was used, not abandoned
