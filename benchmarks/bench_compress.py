"""Compression measured, not assumed: inference energy, latency and accuracy before and after.

On scikit-learn's digits, one CPU thread, ``meters="auto"``:

- pruning: the demo's CNN (32 channels) trained, then torch-pruning removes
  half of each layer's channels and the pruned copy is fine-tuned;
- quantization: an MLP (64-512-512-10) trained, then torchao int8
  (weight-only, and dynamic activations) on copies; the same MLP in tf_keras,
  converted to TensorFlow Lite with int8 weights (dynamic) and with int8
  weights and activations (calibrated), against its float32 TFLite twin.

Each row is a :class:`CompressionReport`: inference energy and time per sample
measured at batch 256 with the original and the compressed model taking turns
(median of the rounds), accuracy on the held-out quarter, size on disk.
"""

from __future__ import annotations

from typing import Any

from _common import arguments, emit


def train(model: Any, loader: Any, epochs: int) -> None:
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


def tflite_reports(train_loader: Any, val_loader: Any, epochs: int, measure: Any) -> list[Any]:
    """The MLP in tf_keras, quantized to TensorFlow Lite (needs the 'tfmot' extra)."""
    import tf_keras
    import torch

    from green_callbacks.compress import tf_keras_models

    x, y = (torch.cat(parts).numpy() for parts in zip(*train_loader))
    x_val, y_val = (torch.cat(parts).numpy() for parts in zip(*val_loader))
    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    mlp = tf_keras.Sequential([layers.Input(x.shape[1:]), layers.Flatten(),
                               layers.Dense(512, activation="relu"),
                               layers.Dense(512, activation="relu"), layers.Dense(10)])  # fmt: skip
    mlp.compile(tf_keras.optimizers.Adam(2e-3),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    mlp.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return [
        tf_keras_models.quantize(
            mlp, mode=mode, eval_data=(x_val, y_val), calibration=x[:200], max_accuracy_drop=0.02,
            measure=measure,
        ).report
        for mode in ("dynamic", "int8")
    ]  # fmt: skip


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    import torch

    from green_callbacks.compress import Measurement, torch_models
    from green_callbacks.lightning.demo import DigitsCNN, digits_loaders

    torch.manual_seed(0)
    torch.set_num_threads(1)
    epochs = 2 if args.quick else 8
    measure = Measurement(
        batch_size=256, rounds=3 if args.quick else 7, min_round_s=0.2 if args.quick else 1.0
    )
    train_loader, val_loader = digits_loaders(batch_size=32, seed=0)

    cnn = DigitsCNN(channels=32)
    train(cnn, train_loader, epochs)
    reports = [
        torch_models.prune(
            cnn, ratio=0.5, eval_data=val_loader, max_accuracy_drop=0.02, measure=measure,
            fine_tune=lambda pruned: train(pruned, train_loader, max(epochs // 2, 1)),
        ).report
    ]  # fmt: skip

    nn = torch.nn
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512),
                        nn.ReLU(), nn.Linear(512, 10))  # fmt: skip
    train(mlp, train_loader, epochs)
    for method in ("int8_weight_only", "int8_dynamic"):
        reports.append(
            torch_models.quantize(
                mlp, mode=method, eval_data=val_loader, max_accuracy_drop=0.02, measure=measure
            ).report
        )

    reports.extend(tflite_reports(train_loader, val_loader, epochs, measure))

    table = [
        f"{'technique':48} {'mJ/sample':>17} {'us/sample':>15} {'accuracy':>13} {'size':>6} kept",
    ]
    for report in reports:
        a, b, r = report.original, report.compressed, report.ratios()
        table.append(
            f"{report.technique:48} {a.j_per_sample * 1e3:7.3f} -> {b.j_per_sample * 1e3:6.3f} "
            f"{a.s_per_sample * 1e6:6.1f} -> {b.s_per_sample * 1e6:5.1f} "
            f"{a.accuracy:.3f} -> {b.accuracy:.3f} x{r['size_bytes']:.2f} {report.accepted}"
        )
    table.append(f"energy source: {reports[0].original.energy_source}")
    for report in reports:
        table.extend(f"warning: {w}" for w in report.warnings)
    emit({"reports": [r.to_dict() for r in reports]}, table, args.json)


if __name__ == "__main__":
    main()
