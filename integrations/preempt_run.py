"""A Lightning fit that a test pre-empts with SIGTERM, then resumes; not a test itself.

    python integrations/preempt_run.py METER_SPEC OUT_DIR [--resume]

Each training step sleeps a little so the signal lands mid-training; after
step 3 the script touches ``OUT_DIR/ready``. At the end it writes
``OUT_DIR/result[-resumed].json``: steps, epochs and the energy summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from green_callbacks.lightning import EnergyCallback, EnergyCheckpoint

EPOCHS = 3
STEPS_PER_EPOCH = 8


class Slow(pl.LightningModule):
    def __init__(self, ready: Path) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.ready = ready

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        time.sleep(0.05)
        if self.global_step == 3:
            self.ready.touch()
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trace", help="a meter spec, e.g. replay:trace.csv")
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    tag = "-resumed" if args.resume else ""

    x = torch.randn(4 * STEPS_PER_EPOCH, 4, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4
    )
    energy = EnergyCallback(meters=args.trace, summary_path=args.out / f"summary{tag}.json")
    saver = EnergyCheckpoint(args.out / "ckpt", every_kj=1000.0)  # saves on the signal only
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=False, callbacks=[energy, saver],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    result: dict[str, Any] = {}
    try:
        trainer.fit(Slow(args.out / "ready"), loader, ckpt_path="last" if args.resume else None)
    finally:
        result = {
            "global_step": trainer.global_step,
            "epochs": trainer.current_epoch,
            "summary": energy.summary,
            "save_reason": None if saver.last_decision is None else saver.last_decision.reason,
        }
        (args.out / f"result{tag}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
