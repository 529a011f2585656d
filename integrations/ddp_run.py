"""A two-process Lightning DDP fit on CPU (gloo), for test_ddp.py; not a test itself.

    python integrations/ddp_run.py TRACE.csv OUT_DIR [--devices 2] [--num-nodes N]

With ``--num-nodes``, start one such process per "node" with ``NODE_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` set (test_ddp.py runs two on loopback).

Lightning re-runs this script for rank 1. Global rank 0 writes
``OUT_DIR/metrics.json`` (the trainer's final metrics) and every rank writes
``OUT_DIR/rank<N>.json`` (the domains it metered and its summary).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning.pytorch as pl
import torch

from green_callbacks.lightning import EnergyCallback


class Regressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trace")
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--num-nodes", type=int, default=1, help="with NODE_RANK set per node")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=generator)
    data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True))
    loader = torch.utils.data.DataLoader(data, batch_size=32)
    energy = EnergyCallback(
        meters=f"replay:{args.trace}", granularity="batch", summary_path=args.out / "summary.json"
    )
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy="ddp" if args.devices * args.num_nodes > 1 else "auto",
        callbacks=[energy],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=2,
    )
    trainer.fit(Regressor(), loader)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = energy.summary or {}
    rank = {"domains": sorted((summary.get("totals") or {}).get("domains", {})), **summary}
    (args.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(rank))
    if trainer.is_global_zero:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        (args.out / "metrics.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main()
