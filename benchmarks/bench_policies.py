"""Energy and accuracy with and without EnergyEarlyStopping; checkpoint overhead by energy.

On scikit-learn's digits with the demo's CNN (one CPU thread, ``meters="auto"``):

- early stopping: the same seeded fit for ``MAX_EPOCHS`` epochs, then with
  ``EnergyEarlyStopping(monitor="val_acc", mode="max", min_gain_per_kj=...)``;
  reported: energy of each fit and final (best) validation accuracy;
- checkpointing: fits with no checkpoint, ``ModelCheckpoint`` saving every
  epoch, and ``EnergyCheckpoint(max_overhead=0.01)``, interleaved over
  repeats; reported (medians): the saves' own measured energy (a tracker
  window around each save, for ``ModelCheckpoint`` too) as a fraction of the
  fit's energy, and each fit's energy over the no-checkpoint fit - 1 (noisier:
  it differences whole fits).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from _common import arguments, emit, median

MAX_EPOCHS, MIN_GAIN_PER_KJ, PATIENCE = 20, 0.02, 2
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def fit(epochs: int, extra: list[Any], seed: int = 0) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch

    from green_callbacks.lightning import EnergyCallback, EnergyEarlyStopping
    from green_callbacks.lightning.demo import DigitsCNN, digits_loaders

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    train, val = digits_loaders(batch_size=32, seed=seed)
    energy = EnergyCallback()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False,
        enable_checkpointing=any(isinstance(c, pl.callbacks.Checkpoint) for c in extra),
        enable_progress_bar=False, enable_model_summary=False, callbacks=[energy, *extra],
        default_root_dir=tempfile.mkdtemp(prefix="gc-bench-"),
    )  # fmt: skip
    trainer.fit(DigitsCNN(), train, val)
    summary = energy.summary or {}
    stops = [c for c in extra if isinstance(c, EnergyEarlyStopping)]
    stats = summary.get("windows", {})
    return {
        "energy_j": summary["totals"]["energy_j"],
        "kind": summary["totals"]["kind"],
        "val_acc": float(trainer.callback_metrics["val_acc"]),
        "epochs": trainer.current_epoch,
        "stop_reason": stops[0].decision.reason.value if stops and stops[0].decision else None,
        "checkpoint_j": stats.get("phase/checkpoint", {}).get("energy_j", 0.0),
    }


def early_stopping(epochs: int) -> dict[str, Any]:
    from green_callbacks.lightning import EnergyEarlyStopping

    full = fit(epochs, [])
    stopper = EnergyEarlyStopping(
        monitor="val_acc", mode="max", min_gain_per_kj=MIN_GAIN_PER_KJ, patience=PATIENCE
    )
    stopped = fit(epochs, [stopper])
    return {"all_epochs": full, "energy_early_stopping": stopped,
            "energy_saved": 1 - stopped["energy_j"] / full["energy_j"]}  # fmt: skip


def metered_model_checkpoint() -> Any:
    """``ModelCheckpoint`` saving every epoch, each save inside a ``phase/checkpoint`` window."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from green_callbacks.lightning.callback import energy_callback

    class MeteredModelCheckpoint(ModelCheckpoint):
        def _save_checkpoint(self, trainer: Any, filepath: str) -> None:  # benchmark only
            session = energy_callback(trainer, "benchmark").session
            assert session is not None
            window = session.tracker.open("phase", "checkpoint")
            super()._save_checkpoint(trainer, filepath)
            session.tracker.close(window)

    return MeteredModelCheckpoint(Path(tempfile.mkdtemp()), every_n_epochs=1, save_top_k=-1)


def checkpointing(epochs: int, repeats: int) -> dict[str, Any]:
    from green_callbacks.lightning import EnergyCheckpoint

    variants = {
        "none": list,
        "every epoch (ModelCheckpoint)": lambda: [metered_model_checkpoint()],
        "EnergyCheckpoint(max_overhead=0.01)": lambda: [
            EnergyCheckpoint(Path(tempfile.mkdtemp()), max_overhead=0.01)
        ],
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, make in variants.items():
            runs[name].append(fit(epochs, make()))
    base = median([r["energy_j"] for r in runs["none"]])
    return {
        name: {
            "energy_over_none": median([r["energy_j"] for r in done]) / base - 1,
            "saves_j": median([r["checkpoint_j"] for r in done]),
            "saves_fraction": median([r["checkpoint_j"] / r["energy_j"] for r in done]),
        }
        for name, done in runs.items()
    }


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    epochs = 3 if args.quick else MAX_EPOCHS
    stopping = early_stopping(epochs)
    saving = checkpointing(2 if args.quick else 8, 1 if args.quick else 5)
    table = [f"{'fit':<40}{'energy J':>10}{'val_acc':>9}{'epochs':>8}  kind / stop"]
    for name in ("all_epochs", "energy_early_stopping"):
        r = stopping[name]
        table.append(
            f"{name:<40}{r['energy_j']:>10.1f}{r['val_acc']:>9.3f}{r['epochs']:>8}"
            f"  {r['kind']} / {r['stop_reason']}"
        )
    table.append(f"energy saved by stopping: {stopping['energy_saved']:+.1%}")
    table.append(f"{'checkpointing':<40}{'saves J':>9}{'of fit':>9}{'fit vs none':>13}")
    for name, r in saving.items():
        table.append(
            f"{name:<40}{r['saves_j']:>9.2f}{r['saves_fraction']:>9.2%}"
            f"{r['energy_over_none']:>+13.2%}"
        )
    emit({"early_stopping": stopping, "checkpointing": saving}, table, args.json)


if __name__ == "__main__":
    main()
