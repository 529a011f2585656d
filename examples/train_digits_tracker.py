"""Train a small PyTorch MLP on scikit-learn's bundled digits, metering each epoch.

Uses the framework-free EnergyTracker directly (the Lightning, Keras and Hugging
Face callbacks feed the same tracker). No download: the digits ship inside
scikit-learn. Prints accuracy next to joules, watts and where the figures come from.

    python examples/train_digits_tracker.py [--epochs 5] [--meter auto]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from green_callbacks import EnergyTracker


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    return x_train, y_train, x_test, y_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--meter", action="append", help="meter spec(s); default auto")
    args = parser.parse_args()

    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = data()
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    with EnergyTracker(args.meter or "auto") as tracker:
        print(f"{'epoch':>5} {'accuracy':>9} {'energy J':>10} {'avg W':>8} {'J/batch':>9}  source")
        for epoch in range(args.epochs):
            window = tracker.open("epoch", "train")
            batch = tracker.open("batch", "train")  # one lap per batch: interpolated, cheap
            batch_j = []
            for start in range(0, len(x_train), args.batch_size):
                xb = x_train[start : start + args.batch_size]
                yb = y_train[start : start + args.batch_size]
                optimizer.zero_grad()
                loss_fn(model(xb), yb).backward()
                optimizer.step()
                batch_j.append(tracker.lap(batch).energy_j)
            result = tracker.close(window)  # a fresh reading: the figure to quote
            with torch.no_grad():
                accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
            per_batch = sum(batch_j) / len(batch_j)
            print(
                f"{epoch + 1:>5} {accuracy:>9.3f} {result.energy_j:>10.2f} "
                f"{result.avg_power_w:>8.2f} {per_batch:>9.4f}  {result.kind}"
            )
        totals = tracker.totals()
    print(f"run: {totals.energy_j:.2f} J in {totals.duration_s:.2f} s, {totals.kind}")
    for domain in totals.layout.domains:
        print(f"  {domain.name}: {domain.label()} [{domain.detail}]")


if __name__ == "__main__":
    main()
