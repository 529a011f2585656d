"""EnergyEarlyStopping: stop when validation accuracy no longer pays for its joules.

Trains the demo's CNN on scikit-learn's bundled digits (no download) for up
to --epochs, stopping when the best val_acc gains less than --min-gain per kJ
over two epochs, within an optional --budget-j; prints why it stopped.

    python examples/lightning_energy_early_stopping.py [--epochs 15] [--min-gain 0.02]
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch

from green_callbacks.lightning import EnergyCallback, EnergyEarlyStopping
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--min-gain", type=float, default=0.02, help="val_acc per kJ")
    parser.add_argument("--budget-j", type=float, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=32, seed=0)
    stopper = EnergyEarlyStopping(
        monitor="val_acc", mode="max", min_gain_per_kj=args.min_gain, patience=2,
        budget_j=args.budget_j, restore_best_weights=True,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=args.epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, callbacks=[EnergyCallback(), stopper],
    )  # fmt: skip
    trainer.fit(DigitsCNN(), train, val)

    total = float(trainer.callback_metrics["energy/total_j"])
    print(f"trained {trainer.current_epoch} epochs, {total:.0f} J")
    if stopper.decision is not None:
        print(f"stopped: {stopper.decision.message}")
        print(f"about {stopper.decision.saved_j_estimate:.0f} J saved (estimate)")


if __name__ == "__main__":
    main()
