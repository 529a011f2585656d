"""A two-GPU Lightning DDP fit metered with NVML, for gpu_check.py; not a check itself.

    python benchmarks/gpu_ddp_run.py OUT_DIR

Lightning re-runs this script for rank 1. Every rank writes ``OUT_DIR/rank<N>.json``:
the domains it metered and its summary (rank 0's holds the job's total).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from green_callbacks.lightning import EnergyCallback


class Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2048, 2048)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    data = torch.utils.data.TensorDataset(torch.randn(8192, 2048))
    energy = EnergyCallback(meters="nvml")
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="gpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[energy],
    )
    trainer.fit(Model(), torch.utils.data.DataLoader(data, batch_size=256))
    summary = energy.summary or {}
    domains = [s["domain"] for s in (summary.get("totals") or {}).get("sources", [])]
    record = {"domains": domains, "summary": summary}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record), encoding="utf-8")


if __name__ == "__main__":
    main()
