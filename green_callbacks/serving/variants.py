"""Architecture variants in a factorial design: whole-network energy, no attribution needed.

The thesis's method for "which layers cost energy": build every combination of
a few architecture factors from one description (convolutional layers, linear
layers, activations on or off), train each for the same steps on the same data,
meter each whole run, repeat in shuffled order, and compare the levels of each
factor with rank tests (:func:`green_callbacks.study.stats.compare`: Mann-Whitney
U and A12 for two levels, Kruskal-Wallis and eta squared for the variants).
Each run's held-out accuracy is recorded too, and :func:`front` gives the
energy-accuracy trade-off: the cheapest variant within an accuracy drop of the best.

Example, the description and the network it builds:
    >>> arch = Architecture(conv=2, linear=3, relu=False)
    >>> arch.label
    'conv2-linear3-norelu'
    >>> [type(m).__name__ for m in arch.build()]
    ['Conv2d', 'Conv2d', 'Flatten', 'Linear', 'Linear', 'Linear']
"""

from __future__ import annotations

import itertools
import random
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.serving.stream import ServingConfigError
from green_callbacks.study.stats import non_dominated

FACTORS = ("conv", "linear", "relu")
TASKS = ("digits", "noisy-digits")
"""The data: scikit-learn's digits, or the same with noise and shifts (a harder task)."""
THESIS_LEVELS = {"conv": (1, 4), "linear": (3, 7), "relu": (True, False)}
"""The thesis's design: 1 or 4 convolutional layers, 3 or 7 linear layers, ReLU on or off."""


@dataclass(frozen=True)
class Architecture:
    """A small image classifier for 8x8 digits, described by its layer counts.

    Attributes:
        conv: 3x3 convolutional layers (size-preserving), >= 0.
        linear: linear layers including the output layer, >= 1.
        relu: a ReLU after every hidden layer.
        channels: channels of each convolutional layer.
        width: units of each hidden linear layer.
    """

    conv: int = 2
    linear: int = 2
    relu: bool = True
    channels: int = 16
    width: int = 64

    def __post_init__(self) -> None:
        if self.conv < 0 or self.linear < 1 or self.channels < 1 or self.width < 1:
            raise ServingConfigError(
                f"an architecture needs conv >= 0, linear >= 1, channels and width >= 1; got {self}"
            )

    @property
    def label(self) -> str:
        return f"conv{self.conv}-linear{self.linear}-{'relu' if self.relu else 'norelu'}"

    def build(self, classes: int = 10) -> Any:
        """The torch network (input ``(n, 1, 8, 8)``).

        Args:
            classes: outputs of the last layer.
        """
        import torch

        layers: list[Any] = []
        channels = 1
        for _ in range(self.conv):
            layers.append(torch.nn.Conv2d(channels, self.channels, 3, padding=1))
            channels = self.channels
            layers += [torch.nn.ReLU()] if self.relu else []
        layers.append(torch.nn.Flatten())
        features = channels * 64
        for _ in range(self.linear - 1):
            layers.append(torch.nn.Linear(features, self.width))
            features = self.width
            layers += [torch.nn.ReLU()] if self.relu else []
        layers.append(torch.nn.Linear(features, classes))
        return torch.nn.Sequential(*layers)


def design(levels: Mapping[str, Sequence[Any]] | None = None) -> list[Architecture]:
    """Every combination of the factors' levels (full factorial).

    Args:
        levels: factor -> its levels, for factors among ``conv``, ``linear``,
            ``relu`` (default: the thesis's 2 x 2 x 2).
    """
    chosen = dict(THESIS_LEVELS if levels is None else levels)
    unknown = set(chosen) - set(FACTORS)
    if unknown:
        raise ServingConfigError(
            f"unknown architecture factor(s) {sorted(unknown)}; the factors are {FACTORS}"
        )
    names = list(chosen)
    return [
        Architecture(**dict(zip(names, combo))) for combo in itertools.product(*chosen.values())
    ]


def factorial(
    architectures: Sequence[Architecture],
    *,
    repetitions: int = 5,
    steps: int = 30,
    epochs: int | None = None,
    batch_size: int = 64,
    task: str = "digits",
    meters: Any = "auto",
    seed: int = 0,
    progress: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Train each architecture the same way per repetition, metered; one row per run.

    Runs are in a fresh random order in each repetition, so a drift in the
    machine's load spreads over all variants. Each row has the variant, its
    factors, ``energy_j``, ``duration_s``, ``params``, the held-out ``accuracy``
    (measured after the metered training), ``energy_kind`` and the sources.

    Args:
        architectures: the variants (:func:`design`).
        repetitions: runs per variant.
        steps: training steps per run, when ``epochs`` is None (Adam, ``batch_size``
            images a step, the training split's batches in turn).
        epochs: passes over the training split instead (the variants trained to the
            same epochs, for accuracy worth comparing).
        batch_size: images per step.
        task: one of :data:`TASKS`.
        meters: as :class:`~green_callbacks.core.EnergyTracker`.
        seed: seed of the run order, the weights and the batches.
        progress: where one line per repetition goes (default stderr).
    """
    import torch

    if repetitions < 1 or steps < 1 or (epochs is not None and epochs < 1):
        raise ServingConfigError(
            f"repetitions, steps and epochs must be >= 1, got {repetitions}, {steps}, {epochs}"
        )
    x, y, x_test, y_test = task_data(task, seed)
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    plan = [batches[i % len(batches)] for i in range(steps)] if epochs is None else batches * epochs
    order = random.Random(seed)
    rows = []
    with EnergyTracker(meters, sample_interval_s=0.05) as tracker:
        source = tracker.source
        for repetition in range(repetitions):
            shuffled = list(architectures)
            order.shuffle(shuffled)
            for arch in shuffled:
                torch.manual_seed(seed)
                net = arch.build()
                optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
                window = tracker.open("phase", arch.label)
                for inputs, labels in plan:
                    optimizer.zero_grad()
                    loss = torch.nn.functional.cross_entropy(net(inputs), labels)
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                result = tracker.close(window)
                with torch.no_grad():
                    accuracy = float((net(x_test).argmax(1) == y_test).float().mean())
                rows.append({
                    "variant": arch.label, "conv": arch.conv, "linear": arch.linear,
                    "relu": "on" if arch.relu else "off", "repetition": repetition,
                    "energy_j": result.energy_j, "duration_s": result.duration_s,
                    "accuracy": accuracy, "params": sum(p.numel() for p in net.parameters()),
                    "energy_kind": result.kind, "energy_source": source,
                })  # fmt: skip
            print(f"repetition {repetition + 1}/{repetitions}: {len(shuffled)} variants",
                  file=progress if progress is not None else sys.stderr, flush=True)  # fmt: skip
    return rows


def task_data(task: str, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """Train and held-out images and labels of ``task`` as tensors.

    ``noisy-digits``: every image (train and held-out) with Gaussian noise of
    standard deviation 0.3 and shifted by up to one pixel each way, drawn from ``seed``.
    """
    import numpy as np
    import torch

    from green_callbacks.study.frameworks import digits

    if task not in TASKS:
        raise ServingConfigError(f"task must be one of {TASKS}, got {task!r}")
    parts = list(digits())
    if task == "noisy-digits":
        rng = np.random.default_rng(seed)
        for index in (0, 2):
            images = parts[index].copy()
            for i in range(len(images)):
                shift = rng.integers(-1, 2, size=2)
                images[i] = np.roll(images[i], tuple(shift), axis=(1, 2))
            parts[index] = (images + rng.normal(0.0, 0.3, images.shape)).astype("float32")
    x, y, x_test, y_test = (torch.as_tensor(a) for a in parts)
    return x, y, x_test, y_test


def front(rows: Sequence[Mapping[str, Any]], max_drop: float = 0.01) -> dict[str, Any]:
    """The energy-accuracy trade-off of the variants (medians over their runs).

    Args:
        rows: what :func:`factorial` returned.
        max_drop: the accuracy one would give up (absolute: 0.01 is one point).

    Returns:
        ``variants``: each with its median ``energy_j`` and ``accuracy`` and whether it is
        on the front (``on_front``: no other variant is as cheap and as accurate and better
        on one, :func:`~green_callbacks.study.stats.non_dominated`), cheapest
        first; ``best``: the most accurate; ``chosen``: the cheapest within ``max_drop``
        of it; ``max_drop``.

    Example:
        >>> rows = [{"variant": v, "energy_j": j, "accuracy": a} for v, j, a in
        ...         [("big", 10.0, 0.97), ("mid", 5.0, 0.965), ("small", 2.0, 0.90)]]
        >>> found = front(rows)
        >>> found["best"]["variant"], found["chosen"]["variant"]
        ('big', 'mid')
    """
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row["variant"]), []).append(row)
    variants: list[dict[str, Any]] = sorted(
        (
            {
                "variant": name,
                "energy_j": statistics.median(float(r["energy_j"]) for r in runs),
                "accuracy": statistics.median(float(r["accuracy"]) for r in runs),
            }
            for name, runs in grouped.items()
        ),
        key=lambda v: (v["energy_j"], -v["accuracy"]),
    )
    if not variants:
        raise ServingConfigError("no runs to find the front of")
    on_front = non_dominated([(v["energy_j"], -v["accuracy"]) for v in variants])
    for variant, on in zip(variants, on_front):
        variant["on_front"] = on
    best = max(variants, key=lambda v: (v["accuracy"], -v["energy_j"]))
    chosen = next(v for v in variants if v["accuracy"] >= best["accuracy"] - max_drop - 1e-12)
    return {"variants": variants, "best": best, "chosen": chosen, "max_drop": max_drop}


def analyse(
    rows: Sequence[Mapping[str, Any]], factors: Sequence[str] = FACTORS
) -> dict[str, list[Any]]:
    """Each factor's levels compared on energy, time and accuracy, then all variants.

    Returns:
        factor -> its :class:`~green_callbacks.study.stats.Comparison` per metric.

    Args:
        rows: what :func:`factorial` returned.
        factors: the factors to compare (those with one level are skipped).
    """
    from green_callbacks.study.stats import compare

    metrics = [m for m in ("energy_j", "duration_s", "accuracy") if rows and m in rows[0]]
    return {
        factor: compare(rows, factor, metrics=metrics, source="the factorial runs")
        for factor in [*factors, "variant"]
        if len({str(row[factor]) for row in rows}) > 1
    }
