"""OOMGuard: catch out-of-memory errors before training, and survive them during it.

Trains the digits CNN with a batch size stored on the module (where OOMGuard
can change it). A pre-flight pass checks the batch fits before any real
energy is spent; an OOM during training writes an emergency checkpoint,
halves the batch and goes on; every epoch the memory trend is checked for a
leak. On a machine with plenty of memory nothing runs out: ``--fits N``
makes the model raise a real ``torch.OutOfMemoryError`` on batches larger
than N samples from ``--from-step`` on, as a smaller GPU would.

    python examples/lightning_oom_guard.py [--epochs 3] [--batch-size 256] [--fits 64]
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import torch

from green_callbacks.lightning import EnergyCallback, OOMGuard
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders


class DigitsWithBatchSize(DigitsCNN):
    """The digits CNN, building its training loader from ``self.batch_size``."""

    def __init__(self, batch_size: int, fits: int | None, from_step: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.fits, self.from_step = fits, from_step

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        size = batch[0].shape[0]
        if self.fits is not None and self.global_step >= self.from_step and size > self.fits:
            raise torch.OutOfMemoryError(f"out of memory at {size} samples (--fits {self.fits})")
        return super().training_step(batch, batch_idx)

    def train_dataloader(self) -> Any:
        return digits_loaders(self.batch_size, seed=0)[0]

    def val_dataloader(self) -> Any:
        return digits_loaders(self.batch_size, seed=0)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--fits", type=int, default=None, help="simulate a device this small")
    parser.add_argument("--from-step", type=int, default=0)
    parser.add_argument("--out", default="runs/oom")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = DigitsWithBatchSize(args.batch_size, args.fits, args.from_step)
    guard = OOMGuard(min_batch_size=8, dirpath=f"{args.out}/emergency")
    trainer = pl.Trainer(
        max_epochs=args.epochs, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, callbacks=[EnergyCallback(), guard],
    )  # fmt: skip
    trainer.fit(model)

    for event in guard.events:
        print(event.message)
    peak = (guard.preflight_peak_bytes or 0) / 2**20
    print(f"pre-flight peak {peak:.0f} MiB ({guard.preflight_peak_source})")
    print(
        f"finished {trainer.current_epoch} epochs at batch size {model.batch_size}, "
        f"val_acc {float(trainer.callback_metrics['val_acc']):.3f}, "
        f"{float(trainer.callback_metrics['energy/total_j']):.0f} J"
    )


if __name__ == "__main__":
    main()
