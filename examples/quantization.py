"""Post-training int8 quantization, measured on this machine: PyTorch (torchao) and Keras 3.

Trains the same small MLP on scikit-learn's bundled digits in PyTorch and in
Keras, quantizes a copy of each, and prints each report: size, accuracy,
inference energy and time per sample before and after, and a warning where
the quantized model costs more here (int8 kernels are not fast on every CPU).

    python examples/quantization.py [--epochs 5] [--out runs/quantization]
"""

from __future__ import annotations

import argparse
import importlib.util
import os

if importlib.util.find_spec("tensorflow") is None:
    os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from green_callbacks.compress import CompressionReport, Measurement, keras_models, torch_models


def show(report: CompressionReport, path: str) -> None:
    print(report.summary())
    report.write_json(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/quantization")
    args = parser.parse_args()

    digits = load_digits()
    x_tr, x_va, y_tr, y_va = train_test_split(
        (digits.data / 16.0).astype("float32"), digits.target, test_size=0.25, random_state=0
    )

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    data = torch.utils.data
    train = data.DataLoader(
        data.TensorDataset(torch.tensor(x_tr), torch.tensor(y_tr)), batch_size=32, shuffle=True
    )
    val = data.DataLoader(data.TensorDataset(torch.tensor(x_va), torch.tensor(y_va)), 256)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(args.epochs):
        for x, y in train:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    for method in ("int8_weight_only", "int8_dynamic"):
        result = torch_models.quantize(
            model,
            mode=method,
            eval_data=val,
            max_accuracy_drop=0.02,
            measure=Measurement(batch_size=256),
        )
        show(result.report, f"{args.out}/torch_{method}.json")

    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(512, activation="relu"), keras.layers.Dense(10),
    ])  # fmt: skip
    net.compile(optimizer="adam",
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    net.fit(x_tr, y_tr, epochs=args.epochs, batch_size=32, verbose=0)
    result = keras_models.quantize(
        net,
        mode="int8",
        eval_data=(x_va, y_va),
        max_accuracy_drop=0.02,
        measure=Measurement(batch_size=256),
    )
    show(result.report, f"{args.out}/keras_int8.json")


if __name__ == "__main__":
    main()
