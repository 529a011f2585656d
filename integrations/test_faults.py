"""Faults injected into real fits, in real processes: what each one leaves behind.

Every way a fit can end besides returning (the user's step raises, the data
raises, another callback raises, KeyboardInterrupt) in Lightning, Keras 3 and
Hugging Face: the summary is written with a note saying how the run ended,
no thread of the package is left, and a SIGTERM afterwards still ends the
process (no signal handler of the package kept it). And a disk that fills up
during training: saves fail with a warning, training finishes, and the last
checkpoint written before is intact. docs/reliability.md lists what survives
what and the test proving each row.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from green_callbacks.testing import constant_power_trace

SCRIPT = Path(__file__).with_name("fault_run.py")
POWER_W = 100.0
FAULTS = ("step", "loader", "callback", "interrupt")
EXTRA = {"lightning": "lightning.pytorch", "keras": "keras", "hf": "transformers"}
ENDED = {
    "lightning": "the run ended by an exception",
    "keras": "fit() ended without its end hook",
    "hf": "train() ended without its end hook",
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("framework", sorted(EXTRA))
def test_a_fit_ended_by_a_fault_keeps_its_record_and_leaves_nothing_behind(
    tmp_path: Path, framework: str, fault: str
) -> None:
    pytest.importorskip(EXTRA[framework], reason=f"needs the '{framework}' extra")
    trace = constant_power_trace(tmp_path, POWER_W)
    run = subprocess.run(
        [sys.executable, str(SCRIPT), framework, fault, trace, str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "KERAS_BACKEND": "torch"},
    )  # fmt: skip
    after = json.loads((tmp_path / "after.json").read_text())

    # the fault reached the user's code as itself (Lightning turns Ctrl-C into SystemExit)
    expected = {"interrupt": "KeyboardInterrupt"}.get(fault, "Fault")
    if framework == "lightning" and fault == "interrupt":
        expected = "SystemExit"
    assert after["raised"] == expected
    # the record: the summary, in memory and on disk, saying how the run ended
    summary = after["summary"]
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["totals"]["energy_j"] > 0 and summary["totals"]["kind"] == "replayed"
    assert any(ENDED[framework] in note for note in summary["notes"])
    # nothing left running, and the process still dies of SIGTERM
    assert not [name for name in after["threads"] if name.startswith("green-callbacks")]
    assert run.returncode == -signal.SIGTERM, run.stdout + run.stderr
    assert "survived SIGTERM" not in run.stdout


# -- a disk that fills up during training ----------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 4 MiB tmpfs where this machine lets the tests mount one (root), else None."""
    folder = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
    ).returncode == 0 if os.geteuid() == 0 else False  # fmt: skip
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> None:
    """Write until the file system under ``folder`` has no space left."""
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC


def test_a_disk_that_fills_up_fails_saves_not_training(
    tmp_path: Path, small_disk: Path | None
) -> None:
    pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
    torch = pytest.importorskip("torch")
    from green_callbacks.errors import OutputFailureWarning
    from green_callbacks.lightning import EnergyCallback, EnergyCheckpoint
    from green_callbacks.lightning.checkpoint import checkpoint_problem

    folder = small_disk if small_disk is not None else tmp_path / "ckpt"
    saved: list[str] = []

    class Fill(pl.Callback):  # type: ignore[misc]
        """After step 4 the disk is full: really (tmpfs), or as a fake that tears every write."""

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step != 4:
                return
            saved.extend(sorted(p.name for p in folder.iterdir()))  # before the disk fills
            if small_disk is not None:
                fill(small_disk)
                return
            io = trainer.strategy.checkpoint_io

            def torn_write(checkpoint: Any, path: Any, storage_options: Any = None) -> None:
                Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device (a fake full disk)")

            io.save_checkpoint = torn_write

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    energy = EnergyCallback(meters=constant_power_trace(tmp_path, POWER_W))
    saver = EnergyCheckpoint(folder, every_kj=1e-9, keep_last=2)  # a save after every step
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[energy, saver, Fill()],
    )  # fmt: skip
    data = torch.utils.data.TensorDataset(torch.ones(32, 4), torch.ones(32, 1))
    with pytest.warns(OutputFailureWarning, match="could not save"):
        trainer.fit(Net(), torch.utils.data.DataLoader(data, batch_size=4))

    assert trainer.global_step == 16  # training finished
    # Lightning runs checkpoint callbacks last, so step 4's save already met the full disk;
    # every later step and both epoch ends tried again, and failed
    assert saver.schedule.failures == 13 + 2
    # what was saved before the disk filled is all there, untouched; no torn part file
    assert sorted(p.name for p in folder.iterdir() if p.name != "filler") == saved
    newest = folder / "last.ckpt"
    assert checkpoint_problem(newest) is None
    assert torch.load(newest, weights_only=False)["global_step"] == 3
