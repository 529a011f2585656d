"""OOMGuard in real Lightning fits, with real ``torch.OutOfMemoryError``s injected.

The fault: a training step whose batch is larger than ``fits`` samples raises
``torch.OutOfMemoryError``, the type CUDA's allocator raises, from inside the
step, as a device without enough memory would. Energy comes from a FakeMeter
(100 W) on a FakeClock that each training step advances by 1 s.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
torch = pytest.importorskip("torch", reason="needs the 'lightning' extra")

from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from green_callbacks.core import keys  # noqa: E402
from green_callbacks.lightning import EnergyCallback, OOMGuard  # noqa: E402
from green_callbacks.policies import (  # noqa: E402
    MemoryLeakWarning,
    OOMFloorError,
    OOMGuardConfigError,
)
from green_callbacks.testing import FakeClock, fake_metered  # noqa: E402

SAMPLES = 128
MIB = 2**20


class FaultyMemoryModel(pl.LightningModule):
    """Runs out of memory on batches larger than ``fits``, from step ``from_step`` on."""

    def __init__(self, batch_size: int = 64, fits: int = SAMPLES, from_step: int = 0,
                 clock: FakeClock | None = None) -> None:  # fmt: skip
        super().__init__()
        self.batch_size = batch_size
        self.fits = fits
        self.from_step = from_step
        self.clock = clock
        self.layer = torch.nn.Linear(8, 2)
        self.norm = torch.nn.BatchNorm1d(8)
        self.sizes: list[tuple[int, int]] = []  # (epoch, batch size) of each finished step
        self.weights_at_oom: torch.Tensor | None = None
        self.leak: list[torch.Tensor] = []
        self.leak_mib = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.global_step >= self.from_step and x.shape[0] > self.fits:
            self.weights_at_oom = self.layer.weight.detach().clone()
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {x.shape[0]} samples (fault injected by "
                f"the test)"
            )
        if self.clock is not None:
            self.clock.advance(1.0)
        self.sizes.append((self.current_epoch, x.shape[0]))
        self.log("train_loss_seen", 1.0)
        return torch.nn.functional.cross_entropy(self.layer(self.norm(x)), y)

    def on_train_start(self) -> None:
        self.at_start = (self.layer.weight.detach().clone(), self.norm.running_mean.clone())

    def on_train_epoch_end(self) -> None:
        if self.leak_mib:  # keeps a tensor per epoch alive: a leak
            self.leak.append(torch.ones(self.leak_mib * MIB // 4))

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(SAMPLES, 8, generator=generator)
        y = torch.randint(0, 2, (SAMPLES,), generator=generator)
        data = torch.utils.data.TensorDataset(x, y)
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path: Path, model: FaultyMemoryModel, callbacks: list[Any], epochs: int = 3) -> Any:
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=CSVLogger(tmp_path, name="logs", version=0),
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=1, default_root_dir=tmp_path, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(model)
    return trainer


def test_oom_mid_training_is_survived_with_a_smaller_batch(tmp_path: Path) -> None:
    energy, clock = fake_metered(EnergyCallback)
    # 64 fits for 3 steps (1.5 epochs), then only 16 does: 64 -> 32 -> 16.
    model = FaultyMemoryModel(batch_size=64, fits=16, from_step=3, clock=clock)
    guard = OOMGuard(preflight=False)
    trainer = fit(tmp_path, model, [energy, guard])

    # Nothing lost: all 3 epochs ran, the first at 64, and the steps before the OOM count.
    assert trainer.current_epoch == 3
    assert [e for e, _ in model.sizes] == sorted(e for e, _ in model.sizes)
    assert {e for e, _ in model.sizes} == {0, 1, 2}
    assert model.sizes[:3] == [(0, 64), (0, 64), (1, 64)]
    assert {size for _, size in model.sizes[3:]} == {16}
    assert trainer.global_step == len(model.sizes)  # no step undone or counted twice
    # training went on from the weights the OOM found, not from an earlier state
    assert model.batch_size == 16
    # two OOMs, each saved and explained
    assert [(e.batch_size, e.new_batch_size) for e in guard.events] == [(64, 32), (32, 16)]
    assert all(e.epoch == 1 and e.step == 3 for e in guard.events)
    assert "retrying at 32" in guard.events[0].message and "epoch 1" in guard.events[0].message
    for event in guard.events:
        assert event.checkpoint is not None
        saved = torch.load(event.checkpoint, weights_only=False)
        assert saved["global_step"] == 3 and saved["epoch"] == 1
        assert torch.equal(saved["state_dict"]["layer.weight"], model.weights_at_oom)
    assert not list(Path(guard.events[0].checkpoint).parent.glob(".part-*"))
    # the energy total kept counting through the recovery: 100 J per step run
    assert energy.summary is not None
    assert energy.summary["totals"]["energy_j"] == pytest.approx(100.0 * len(model.sizes))
    logged = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text()
    assert keys.OOM_BATCH_SIZE in logged and keys.HOST_RSS_MIB in logged
    # the summary's facts hold the events, so the advisor can name them (P7)
    facts = energy.summary["facts"]
    assert [(e["batch_size"], e["new_batch_size"]) for e in facts["oom_events"]] == [
        (64, 32), (32, 16)]  # fmt: skip


def test_oom_at_the_floor_is_a_clear_error_after_an_emergency_save(tmp_path: Path) -> None:
    model = FaultyMemoryModel(batch_size=32, fits=4, from_step=2)
    guard = OOMGuard(preflight=False, min_batch_size=16, dirpath=tmp_path / "emergency")

    with pytest.raises(OOMFloorError, match="already the floor") as caught:
        fit(tmp_path, model, [guard])

    assert isinstance(caught.value.__cause__, torch.OutOfMemoryError)
    assert "min_batch_size=16" in str(caught.value)
    assert [(e.batch_size, e.new_batch_size) for e in guard.events] == [(32, 16), (16, None)]
    assert sorted(p.name for p in (tmp_path / "emergency").iterdir()) == [
        "oom-epoch=0-step=2.ckpt"  # the second save replaced the first: same progress
    ]


def test_preflight_shrinks_the_batch_before_any_training_step(tmp_path: Path) -> None:
    model = FaultyMemoryModel(batch_size=128, fits=40)
    weights = model.layer.weight.detach().clone()
    stats = model.norm.running_mean.clone()
    guard = OOMGuard(batch_size_attr="batch_size")

    trainer = fit(tmp_path, model, [guard], epochs=1)

    assert [(e.epoch, e.batch_size, e.new_batch_size) for e in guard.events] == [
        (-1, 128, 64), (-1, 64, 32),
    ]  # fmt: skip
    assert "pre-flight" in guard.events[0].message
    assert {size for _, size in model.sizes} == {32}  # no step ever ran at a size that fails
    assert trainer.global_step == SAMPLES // 32
    assert guard.preflight_peak_bytes is not None and guard.preflight_peak_bytes > 0
    assert guard.preflight_peak_source == "host peak RSS"
    # the pre-flight passes left weights and batch-norm statistics as they were
    assert torch.equal(model.at_start[0], weights) and torch.equal(model.at_start[1], stats)


def test_errors_other_than_oom_pass_through_untouched(tmp_path: Path) -> None:
    class Broken(FaultyMemoryModel):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            raise ValueError("a bug in the model")

    guard = OOMGuard(preflight=False)
    with pytest.raises(ValueError, match="a bug in the model"):
        fit(tmp_path, Broken(), [guard])
    assert guard.events == []


def test_missing_batch_size_attribute_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(OOMGuardConfigError, match=r"OOMGuard\(batch_size_attr=\.\.\.\)"):
        fit(tmp_path, FaultyMemoryModel(), [OOMGuard("micro_batch")])


def test_steady_memory_growth_is_flagged_as_a_leak(tmp_path: Path) -> None:
    model = FaultyMemoryModel(batch_size=64)
    model.leak_mib = 96
    guard = OOMGuard(preflight=False, leak_window=3, min_leak_mib=48)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path, model, [guard], epochs=4)

    leaks = [w for w in caught if issubclass(w.category, MemoryLeakWarning)]
    assert leaks, "a 96 MiB/epoch climb was not flagged"
    assert "MiB per epoch" in str(leaks[0].message) and "epochs left" in str(leaks[0].message)


def test_flat_memory_is_not_a_leak(tmp_path: Path) -> None:
    guard = OOMGuard(preflight=False, leak_window=3, min_leak_mib=48)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MemoryLeakWarning)
        fit(tmp_path, FaultyMemoryModel(batch_size=64), [guard], epochs=4)


def test_a_changed_lightning_internal_names_the_checked_versions() -> None:
    from green_callbacks.errors import FrameworkAPIError
    from green_callbacks.lightning import _compat

    with pytest.raises(FrameworkAPIError, match=r"checked with Lightning 2\.2 to 2\.6"):
        _compat.dump_checkpoint(object())
