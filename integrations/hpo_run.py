"""One process of a search shared through a storage; not a test itself. Run by test_hpo.py.

python integrations/hpo_run.py STORAGE METER_SPEC BUDGET_J
"""

from __future__ import annotations

import sys
import time

import optuna

from green_callbacks.optuna import EnergyBudget, metered


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    time.sleep(0.2)  # a short "fit" at the trace's constant power
    return x * x


def main() -> None:
    storage, meters, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="shared", storage=storage)
    study.optimize(metered(objective, meters=[meters]), n_trials=200,
                   callbacks=[EnergyBudget(budget_j=budget)])  # fmt: skip


if __name__ == "__main__":
    main()
