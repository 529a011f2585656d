"""A real fit that a fault ends; not a test itself. Run by test_faults.py.

    python integrations/fault_run.py FRAMEWORK FAULT METER_SPEC OUT_DIR

FRAMEWORK: ``lightning``, ``keras`` or ``hf``. FAULT: where the run breaks:
``step`` (the user's training step raises), ``loader`` (the data raises),
``callback`` (another callback raises), ``interrupt`` (KeyboardInterrupt in a
step, as Ctrl-C without the latch would). The fit has ``EnergyCallback`` (and
``EnergyCheckpoint`` latching SIGTERM where the framework has one). After the
fit ends, the script waits for the run to be closed, writes ``OUT_DIR/after.json``
(what the fit raised, the threads left, the SIGTERM handler, the summary) and
then sends itself SIGTERM: a process that a latch left deaf would print
``survived SIGTERM`` and exit 0; a healthy one dies of the signal.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

FAIL_AT = 5
"""The step (or data item) at which the fault strikes."""


class Fault(RuntimeError):
    pass


def strike(fault: str, here: str, count: int) -> None:
    """Raise the fault if this is its place and its moment."""
    if fault == here and count == FAIL_AT:
        if fault == "interrupt":
            raise KeyboardInterrupt
        raise Fault(f"injected {fault} fault")


def lightning(fault: str, meters: str, out: Path) -> Any:
    import lightning.pytorch as pl
    import torch

    from green_callbacks.lightning import EnergyCallback, EnergyCheckpoint

    class Data(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
        calls = 0

        def __len__(self) -> int:
            return 64

        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
            Data.calls += 1
            strike(fault, "loader", Data.calls // 4)
            return torch.ones(4), torch.ones(1)

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            strike(fault, "step", self.global_step)
            strike(fault, "interrupt", self.global_step)
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Other(pl.Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            strike(fault, "callback", trainer.global_step)

    energy = EnergyCallback(meters=meters, summary_path=out / "summary.json")
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[energy, EnergyCheckpoint(out / "ckpt", every_kj=1000.0), Other()],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(Data(), batch_size=4)
    return energy, lambda: trainer.fit(Net(), loader)


def keras(fault: str, meters: str, out: Path) -> Any:
    import keras
    import numpy as np

    from green_callbacks.keras import EnergyCallback, EnergyCheckpoint

    class Data(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def __len__(self) -> int:
            return 16

        def __getitem__(self, index: int) -> tuple[Any, Any]:
            self.calls += 1
            strike(fault, "loader", self.calls)
            return np.ones((4, 4), "float32"), np.ones((4, 1), "float32")

    class Step(keras.layers.Layer):  # type: ignore[misc]
        calls = 0

        def call(self, x: Any) -> Any:
            Step.calls += 1
            strike(fault, "step", Step.calls)
            strike(fault, "interrupt", Step.calls)
            return x

    class Other(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            strike(fault, "callback", batch)

    model = keras.Sequential([keras.Input((4,)), Step(), keras.layers.Dense(1)])
    model.compile("sgd", "mse", run_eagerly=True)
    energy = EnergyCallback(meters=meters, summary_path=out / "summary.json")
    callbacks = [energy, EnergyCheckpoint(out / "ckpt", every_kj=1000.0), Other()]
    return energy, lambda: model.fit(Data(), epochs=3, verbose=0, callbacks=callbacks)


def hf(fault: str, meters: str, out: Path) -> Any:
    import torch
    import transformers

    from green_callbacks.hf import EnergyCallback

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)
            self.calls = 0

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            self.calls += 1
            strike(fault, "step", self.calls)
            strike(fault, "interrupt", self.calls)
            logits = self.layer(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    class Data(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        calls = 0

        def __len__(self) -> int:
            return 64

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            Data.calls += 1
            strike(fault, "loader", Data.calls // 4)
            return {"x": torch.ones(4), "labels": torch.tensor(index % 2)}

    class Other(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            strike(fault, "callback", state.global_step)

    energy = EnergyCallback(meters=meters, summary_path=out / "summary.json")
    arguments = transformers.TrainingArguments(
        output_dir=str(out / "hf"), num_train_epochs=3, per_device_train_batch_size=4,
        save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=Net(), args=arguments, train_dataset=Data(), callbacks=[energy, Other()]
    )
    return energy, trainer.train


BUILDERS: dict[str, Callable[[str, str, Path], Any]] = {
    "lightning": lightning, "keras": keras, "hf": hf,
}  # fmt: skip


def main() -> None:
    framework, fault, meters, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    energy, fit = BUILDERS[framework](fault, meters, out)
    raised = ""
    try:
        fit()
    except BaseException as err:  # what the user's code would see
        raised = type(err).__name__
    deadline = time.monotonic() + 5.0
    while energy.session is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    handler = signal.getsignal(signal.SIGTERM)
    after = {
        "raised": raised,
        "threads": sorted(t.name for t in threading.enumerate()),
        "sigterm_handler": getattr(handler, "__qualname__", str(handler)),
        "summary": energy.summary,
    }
    (out / "after.json").write_text(json.dumps(after))
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5.0)
    print("survived SIGTERM")


if __name__ == "__main__":
    main()
