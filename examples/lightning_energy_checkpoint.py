"""EnergyCheckpoint: checkpoints planned by energy, safe against pre-emption.

Saves whenever the energy since the last save makes saving cost under 1 % of
training energy; on SIGTERM (or SIGUSR1) it saves after the current batch and
ends training. Run it again with --resume to continue from last.ckpt, energy
total included.

    python examples/lightning_energy_checkpoint.py [--epochs 4] [--out runs/ckpt] [--resume]
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch

from green_callbacks.lightning import EnergyCallback, EnergyCheckpoint
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default="runs/ckpt")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=32, seed=0)
    energy = EnergyCallback()
    saver = EnergyCheckpoint(args.out, max_overhead=0.01, signals=("SIGTERM", "SIGUSR1"))
    trainer = pl.Trainer(
        max_epochs=args.epochs, logger=False, enable_progress_bar=False,
        callbacks=[energy, saver],
    )  # fmt: skip
    trainer.fit(DigitsCNN(), train, val, ckpt_path="last" if args.resume else None)

    planner = saver.planner
    total = float(trainer.callback_metrics["energy/total_j"])
    overhead = planner.overhead(total)
    print(f"{planner.saves} saves, {planner.saved_j:.2f} J ({overhead:.2%} of {total:.0f} J)")
    print(f"newest: {saver.last_model_path}")


if __name__ == "__main__":
    main()
