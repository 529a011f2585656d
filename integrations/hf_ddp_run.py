"""A two-process Hugging Face Trainer job on CPU (gloo), for test_hf_ddp.py; not a test itself.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        integrations/hf_ddp_run.py TRACE.csv OUT_DIR [--local-rank-unset]

``--local-rank-unset`` plays a launcher that leaves ``LOCAL_RANK`` unset: every
rank thinks it is its host's local rank 0. Every rank writes
``OUT_DIR/rank<N>.json`` (the domains it metered and its summary); rank 0 also
writes ``OUT_DIR/logs.json`` (the Trainer's log history).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import transformers

from green_callbacks.hf import EnergyCallback


class Regressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": torch.nn.functional.mse_loss(self.layer(x), labels)}


def main() -> None:
    trace, out = sys.argv[1], Path(sys.argv[2])
    if "--local-rank-unset" in sys.argv:
        os.environ.pop("LOCAL_RANK", None)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=generator)
    rows = [{"x": x[i], "labels": x[i].sum(dim=0, keepdim=True)} for i in range(512)]
    args = transformers.TrainingArguments(
        output_dir=str(out / "hf"),
        num_train_epochs=2,
        per_device_train_batch_size=32,
        logging_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    energy = EnergyCallback(meters=f"replay:{trace}", summary_path=out / "summary.json")
    trainer = transformers.Trainer(
        model=Regressor(), args=args, train_dataset=rows, callbacks=[energy]
    )
    trainer.train()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    summary = energy.summary or {}
    record = {"domains": sorted((summary.get("totals") or {}).get("domains", {})), **summary}
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    if rank == 0:
        (out / "logs.json").write_text(json.dumps(trainer.state.log_history))


if __name__ == "__main__":
    main()
