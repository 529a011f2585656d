"""Minimal Lightning example: one callback adds energy next to accuracy in the CSV log.

Trains a small MLP on scikit-learn's bundled digits (no download).

    python examples/lightning_digits.py [--epochs 3] [--out runs/lightning]
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from green_callbacks.lightning import EnergyCallback


class DigitsMLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def loaders() -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.25, random_state=0)
    dataset = torch.utils.data.TensorDataset
    return (
        torch.utils.data.DataLoader(dataset(x_tr, y_tr), batch_size=32, shuffle=True),
        torch.utils.data.DataLoader(dataset(x_va, y_va), batch_size=256),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/lightning")
    args = parser.parse_args()

    torch.manual_seed(0)
    energy = EnergyCallback(summary_path=f"{args.out}/energy_summary.json")  # the one added line
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=CSVLogger(args.out, name="digits"),
        callbacks=[energy],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    trainer.fit(DigitsMLP(), *loaders())
    metrics = trainer.callback_metrics
    print(
        f"val_acc {metrics['val_acc']:.3f}  train epoch {metrics['energy/train_epoch_j']:.2f} J  "
        f"total {metrics['energy/total_j']:.2f} J  (CSV in {trainer.logger.log_dir})"
    )


if __name__ == "__main__":
    main()
