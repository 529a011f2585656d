"""Minimal Keras 3 example: one callback adds energy next to accuracy in CSVLogger's file.

Trains a small MLP on scikit-learn's bundled digits (no download), on the
TensorFlow backend when TensorFlow is installed, else on torch.

    python examples/keras_digits.py [--epochs 3] [--out runs/keras]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

if importlib.util.find_spec("tensorflow") is None:
    os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from green_callbacks.keras import EnergyCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/keras")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    x_tr, x_va, y_tr, y_va = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x_tr, y_tr, epochs=args.epochs, batch_size=32, validation_data=(x_va, y_va), verbose=0,
        callbacks=[
            # First in the list, so the loggers after it receive the figures.
            EnergyCallback(summary_path=f"{args.out}/energy_summary.json"),
            keras.callbacks.CSVLogger(f"{args.out}/log.csv"),
        ],
    )  # fmt: skip
    h = history.history
    print(
        f"val_accuracy {h['val_accuracy'][-1]:.3f}  "
        f"train epoch {h['energy/train_epoch_j'][-1]:.2f} J  "
        f"total {h['energy/total_j'][-1]:.2f} J  (CSV in {args.out}/log.csv)"
    )


if __name__ == "__main__":
    main()
