"""Serve your own model under a request stream and pick the batching policy by joules.

Trains a small CNN on scikit-learn's bundled digits (no download) for a few
epochs, then serves it in real time at each --rates with three batching
policies (one request at a time, fixed batches, and dynamic batching with a
maximum wait), metered: joules per request against latency. It prints the
table, the policy with the fewest joules per request whose p99 latency meets
--slo-ms, and where the model's inference joules go by layer type (attributed
by time, not measured).

    python examples/serving_energy.py [--rates 32 128] [--requests 400] [--slo-ms 100] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from green_callbacks.serving import (
    Architecture,
    ServeConfig,
    attribute,
    batch_runner,
    recommend,
    run_sweep,
)
from green_callbacks.serving.sweep import format_table, plot

POLICIES = ["fixed:1", "fixed:16", "maxwait:16/40"]


def trained_model(epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target)
    model = Architecture(conv=2, linear=2).build()  # 2 conv + 2 linear layers, ReLUs
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        for start in range(0, len(images), 64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                model(images[start : start + 64]), labels[start : start + 64]
            )
            loss.backward()
            optimizer.step()
    accuracy = (model(images).argmax(1) == labels).float().mean().item()
    print(f"trained {epochs} epochs: accuracy {accuracy:.3f} on the digits it saw")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", nargs="+", type=float, default=[32.0, 128.0])
    parser.add_argument("--requests", type=int, default=400, help="per configuration")
    parser.add_argument("--slo-ms", type=float, default=100.0, help="p99 latency objective")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="runs/serving_example")
    args = parser.parse_args()

    model = trained_model(args.epochs)
    run = batch_runner(model, torch.zeros(1, 8, 8))  # one request: an 8x8 image
    config = ServeConfig(requests=args.requests, warmup_batches=4, idle_s=1.0)
    streams = [f"poisson:{rate:g}" for rate in args.rates]
    # The model's name is part of what the folder's figures are keyed by: a rerun
    # into the same --out resumes only for the same model (see docs/inference.md).
    identity = f"digits CNN, {args.epochs} epoch(s)"
    results = run_sweep(run, streams, POLICIES, config, args.out, model=identity)
    print(format_table(results))
    for recommendation in recommend(results, args.slo_ms):
        print(recommendation.message)
    print(f"figure: {plot(results, args.out, slo_ms=args.slo_ms)}")

    batch = torch.zeros(16, 1, 8, 8)

    def infer() -> None:
        with torch.inference_mode():
            model(batch)

    split = attribute(model, infer, batches=50)
    shares = ", ".join(f"{kind} {share:.0%}" for kind, share in split.shares().items())
    print(f"inference joules by layer type (attributed by time): {shares}")
    print(f"(the timing hooks added {split.hook_overhead:+.0%} time; energy {split.energy_kind})")
    if split.caution:
        print(f"caution: {split.caution}")
    print(f"everything measured is in {Path(args.out).resolve()}")


if __name__ == "__main__":
    main()
