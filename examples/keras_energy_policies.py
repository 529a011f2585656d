"""Keras 3: EnergyEarlyStopping, EnergyCheckpoint and OOMGuard on scikit-learn's digits.

``EnergyCallback`` comes first in the list, so the policy callbacks after it
find the epoch's energy in ``logs``. Training goes through ``OOMGuard.fit``,
which survives out-of-memory errors by halving the batch (``--fits N`` makes
the model raise a real out-of-memory error on batches above N samples, as a
smaller GPU would). ``EnergyEarlyStopping`` stops when validation accuracy
gains less than ``--min-gain-per-kj`` per kJ; ``EnergyCheckpoint`` backs up
on an energy-planned interval and on SIGTERM; after a SIGTERM, run again
with the same ``--out`` to resume from the backup, energy total included.

    python examples/keras_energy_policies.py [--epochs 20] [--out runs/keras_policies]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from typing import Any

if importlib.util.find_spec("tensorflow") is None:
    os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from green_callbacks.keras import EnergyCallback, EnergyCheckpoint, EnergyEarlyStopping, OOMGuard


class SmallDevice(keras.layers.Layer):  # type: ignore[misc]
    """Passes inputs through; with ``fits``, batches above it raise an out-of-memory error."""

    def __init__(self, fits: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fits = fits

    def call(self, inputs: Any, training: bool = False) -> Any:
        if training and self.fits is not None and inputs.shape[0] > self.fits:
            raise MemoryError(f"out of memory at {inputs.shape[0]} samples (--fits {self.fits})")
        return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fits", type=int, default=None, help="simulate a device this small")
    parser.add_argument("--min-gain-per-kj", type=float, default=0.5)
    parser.add_argument("--out", default="runs/keras_policies")
    args = parser.parse_args()

    digits = load_digits()
    x_tr, x_va, y_tr, y_va = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=0
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), SmallDevice(args.fits),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10),
    ])  # fmt: skip
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=args.fits is not None,  # batch sizes are symbolic inside a compiled step
    )
    stopper = EnergyEarlyStopping(
        monitor="val_accuracy", mode="max", min_gain_per_kj=args.min_gain_per_kj, patience=2,
        restore_best_weights=True,
    )  # fmt: skip
    saver = EnergyCheckpoint(f"{args.out}/backup", max_overhead=0.01)
    guard = OOMGuard(min_batch_size=8, dirpath=f"{args.out}/emergency")
    history = guard.fit(
        model, x_tr, y_tr, batch_size=args.batch_size, epochs=args.epochs,
        validation_data=(x_va, y_va), verbose=0,
        callbacks=[EnergyCallback(), stopper, saver],
    )  # fmt: skip

    h = history.history
    for event in guard.events:
        print(event.message)
    if saver.resumed_from is not None:
        print(f"resumed from {saver.resumed_from}")
    reason = stopper.decision.message if stopper.decision else "ran every planned epoch"
    print(f"{len(history.epoch)} epochs at batch size {guard.batch_size}: {reason}")
    print(
        f"val_accuracy {max(h['val_accuracy']):.3f} (best), total {h['energy/total_j'][-1]:.1f} J, "
        f"{saver.planner.saves} backups costing {saver.planner.saved_j:.2f} J"
    )


if __name__ == "__main__":
    main()
