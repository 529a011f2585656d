"""Distillation, measured: a small model learns from a larger one, in Lightning and in Keras 3.

On scikit-learn's bundled digits. A 32-channel CNN teacher (Lightning) and a
512-unit MLP teacher (Keras) are trained first; then a student a fraction of
their size is distilled from each (frozen teacher, temperature, loss mix) and
the report compares it with its teacher: parameters, accuracy and inference
energy per sample measured on this machine.

    python examples/distillation.py [--epochs 4] [--out runs/distillation]
"""

from __future__ import annotations

import argparse
import importlib.util
import os

if importlib.util.find_spec("tensorflow") is None:
    os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from green_callbacks.compress import CompressionReport, Measurement
from green_callbacks.compress.keras_models import distill
from green_callbacks.keras import EnergyCallback as KerasEnergyCallback
from green_callbacks.lightning import Distillation, EnergyCallback
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders


def show(name: str, report: CompressionReport, path: str) -> None:
    before, after = report.original, report.compressed
    print(f"{name}: {report.verdict}")
    energy = f"{before.j_per_sample * 1e3:.3f} -> {after.j_per_sample * 1e3:.3f} mJ/sample"
    print(f"  params {before.params} -> {after.params}, {energy}")
    for warning in report.warnings:
        print("  warning:", warning)
    report.write_json(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default="runs/distillation")
    args = parser.parse_args()

    # Lightning: a 32-channel teacher, an 8-channel student
    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=32, seed=0)
    quiet = {"logger": False, "enable_progress_bar": False, "enable_checkpointing": False,
             "enable_model_summary": False}  # fmt: skip
    teacher = DigitsCNN(channels=32)
    pl.Trainer(max_epochs=args.epochs, **quiet).fit(teacher, train, val)
    module = Distillation(DigitsCNN(channels=8), teacher, temperature=3.0, alpha=0.7)
    trainer = pl.Trainer(max_epochs=args.epochs, callbacks=[EnergyCallback()], **quiet)
    trainer.fit(module, train, val)
    result = module.report(val, max_accuracy_drop=0.05, measure=Measurement(batch_size=256))
    show("lightning", result.report, f"{args.out}/lightning.json")

    # Keras 3: a 512-unit teacher, a 64-unit student, with keras.distillation.Distiller
    digits = load_digits()
    x_tr, x_va, y_tr, y_va = train_test_split(
        (digits.data / 16.0).astype("float32"), digits.target, test_size=0.25, random_state=0
    )
    keras.utils.set_random_seed(0)

    def mlp(units: int) -> keras.Model:
        hidden = keras.layers.Dense(units, activation="relu")
        return keras.Sequential([keras.Input((64,)), hidden, keras.layers.Dense(10)])

    big = mlp(512)
    big.compile(optimizer="adam",
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    big.fit(x_tr, y_tr, epochs=args.epochs, batch_size=32, verbose=0)
    result = distill(
        big, mlp(64), x_tr, y_tr, x_val=x_va, y_val=y_va, temperature=3.0,
        epochs=args.epochs, optimizer=keras.optimizers.Adam(0.01),
        callbacks=[KerasEnergyCallback()], max_accuracy_drop=0.05,
        measure=Measurement(batch_size=256),
    )  # fmt: skip
    show("keras", result.report, f"{args.out}/keras.json")


if __name__ == "__main__":
    main()
