"""tf_keras (Keras 2) compression with tensorflow-model-optimization, measured on this machine.

Trains a small tf_keras MLP on scikit-learn's bundled digits, metered by
``green_callbacks.tf_keras.EnergyCallback`` (tf_keras rejects Keras 3 callbacks), then:
- prunes a copy with tfmot's ``prune_low_magnitude`` (fine-tuned, stripped);
- converts it to TensorFlow Lite with post-training int8 quantization;
- trains a copy quantization-aware (tfmot) and converts that to int8 TFLite.
Each report gives size, accuracy and inference energy and time per sample
before and after; the quantized models are compared with the float32 TFLite
original on the same LiteRT interpreter.

    python examples/tf_keras_compression.py [--epochs 5] [--out runs/tf_keras]
"""

from __future__ import annotations

import argparse

import tf_keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from green_callbacks.compress import CompressionReport, Measurement
from green_callbacks.compress.tf_keras_models import (
    FineTune,
    prune_magnitude,
    quantize,
    quantize_aware,
)
from green_callbacks.tf_keras import EnergyCallback


def show(report: CompressionReport, path: str) -> None:
    print(report.summary())
    report.write_json(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/tf_keras")
    args = parser.parse_args()

    digits = load_digits()
    x_tr, x_va, y_tr, y_va = train_test_split(
        (digits.data / 16.0).astype("float32"), digits.target, test_size=0.25, random_state=0
    )
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input((64,)), tf_keras.layers.Dense(256, activation="relu"),
        tf_keras.layers.Dense(10),
    ])  # fmt: skip
    model.compile(  # the fine-tuning steps reuse this loss and optimizer kind
        optimizer=tf_keras.optimizers.Adam(1e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    energy = EnergyCallback(summary_path=f"{args.out}/training_energy.json")
    model.fit(x_tr, y_tr, epochs=args.epochs, batch_size=32, verbose=0, callbacks=[energy])
    totals = (energy.summary or {}).get("totals") or {}
    print(f"training: {totals.get('energy_j', 0.0):.4g} J ({totals.get('kind', 'unknown')})")
    measure = Measurement(batch_size=256)
    held_out = (x_va, y_va)

    pruned = prune_magnitude(
        model, sparsity=0.7, x=x_tr, y=y_tr, eval_data=held_out, fine_tune=FineTune(epochs=2),
        max_accuracy_drop=0.02, measure=measure,
    )  # fmt: skip
    show(pruned.report, f"{args.out}/pruning.json")
    post = quantize(model, mode="int8", eval_data=held_out, calibration=x_tr[:200],
                    max_accuracy_drop=0.02, measure=measure)  # fmt: skip
    show(post.report, f"{args.out}/tflite_int8.json")
    aware = quantize_aware(model, x=x_tr, y=y_tr, eval_data=held_out, fine_tune=FineTune(epochs=1),
                           max_accuracy_drop=0.02, measure=measure)  # fmt: skip
    show(aware.report, f"{args.out}/qat.json")


if __name__ == "__main__":
    main()
