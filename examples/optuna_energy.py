"""Energy-aware search: each Optuna trial's joules, a budget for the study, the Pareto front.

Searches the learning rate and width of the demo's CNN on scikit-learn's
bundled digits (no download) with Lightning; every trial's fit has its own
EnergyCallback, whose total becomes the trial's energy. The study stops before
a trial would take it over --budget-j; then it prints the trials that no other
beats on both accuracy and energy, and draws them.

    python examples/optuna_energy.py [--trials 20] [--epochs 2] [--budget-j 2000] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import matplotlib
import optuna
import torch

from green_callbacks.lightning import EnergyCallback
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders
from green_callbacks.optuna import ENERGY_J, KIND, EnergyBudget, metered, pareto_front, spent_j

matplotlib.use("Agg")
from matplotlib import pyplot


def objective(epochs: int) -> Any:
    def fit(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        channels = trial.suggest_categorical("channels", [4, 8, 16])
        torch.manual_seed(trial.number)
        train, val = digits_loaders(batch_size=32, seed=0)
        trainer = pl.Trainer(
            max_epochs=epochs, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
            callbacks=[EnergyCallback(progress_bar=False)],
        )  # fmt: skip
        trainer.fit(DigitsCNN(channels=channels, lr=lr), train, val)
        return float(trainer.callback_metrics["val_acc"])

    return fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--budget-j", type=float, default=2000.0)
    parser.add_argument("--out", type=Path, default=Path("runs/optuna"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    budget = EnergyBudget(budget_j=args.budget_j)
    study.optimize(metered(objective(args.epochs)), n_trials=args.trials, callbacks=[budget])

    kind = study.trials[0].user_attrs[KIND]
    print(f"{len(study.trials)} trials, {spent_j(study):.0f} J ({kind})")
    print(budget.decision or "the budget was not reached")
    front = pareto_front(study)
    print("trials no other beats on both accuracy and energy:")
    for trial in front:
        print(f"  #{trial.number}: val_acc {trial.value:.3f} for {trial.user_attrs[ENERGY_J]:.0f} J"
              f"  {trial.params}")  # fmt: skip

    args.out.mkdir(parents=True, exist_ok=True)
    figure, axis = pyplot.subplots(figsize=(6, 4))
    done = [t for t in study.trials if t.value is not None]
    axis.scatter([t.user_attrs[ENERGY_J] for t in done], [t.value for t in done],
                 alpha=0.5, label="trials")  # fmt: skip
    axis.plot([t.user_attrs[ENERGY_J] for t in front], [t.value for t in front], "o-",
              color="C3", label="Pareto front")  # fmt: skip
    axis.set_xlabel(f"energy per trial (J, {kind})")
    axis.set_ylabel("validation accuracy")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.out / "pareto.png", dpi=110)
    print(f"figure: {args.out / 'pareto.png'}")


if __name__ == "__main__":
    main()
