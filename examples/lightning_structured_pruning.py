"""StructuredPruning: halve the digits CNN's channels during training, with the saving measured.

Trains on scikit-learn's bundled digits; after epochs 1 and 2 torch-pruning
removes channels (a quarter, then half), the later epochs fine-tune, and at
the end the report compares the model from before the first step with the
pruned one: parameters, MACs, size, accuracy and inference energy per sample
measured on this machine. A pruned model that loses more than
--max-accuracy-drop is rejected and the original layers come back.

    python examples/lightning_structured_pruning.py [--epochs 5] [--out runs/pruning]
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch

from green_callbacks.compress import Measurement
from green_callbacks.lightning import EnergyCallback, StructuredPruning
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--max-accuracy-drop", type=float, default=0.02)
    parser.add_argument("--out", default="runs/pruning")
    args = parser.parse_args()

    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=32, seed=0)
    pruning = StructuredPruning(
        args.ratio, at_epochs=(1, 2), max_accuracy_drop=args.max_accuracy_drop,
        measure=Measurement(batch_size=256),
        report_path=f"{args.out}/compression_report.json",
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=args.epochs, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, callbacks=[EnergyCallback(), pruning],
    )  # fmt: skip
    trainer.fit(DigitsCNN(channels=32), train, val)

    assert pruning.report is not None
    print(pruning.report.summary())
    print(f"training: {float(trainer.callback_metrics['energy/total_j']):.0f} J")


if __name__ == "__main__":
    main()
