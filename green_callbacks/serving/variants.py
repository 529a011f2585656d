"""Architecture variants in a factorial design: whole-network energy, no attribution needed.

The thesis's method for "which layers cost energy": build every combination of
a few architecture factors from one description (convolutional layers, linear
layers, activations on or off), train each for the same steps on the same data,
meter each whole run, repeat in shuffled order, and compare the levels of each
factor with rank tests (:func:`green_callbacks.study.stats.compare`: Mann-Whitney
U and A12 for two levels, Kruskal-Wallis and eta squared for the variants).

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
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.serving.stream import ServingConfigError

FACTORS = ("conv", "linear", "relu")
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
    batch_size: int = 64,
    meters: Any = "auto",
    seed: int = 0,
    progress: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Train each architecture ``steps`` steps per repetition, metered; one row per run.

    Runs are in a fresh random order in each repetition, so a drift in the
    machine's load spreads over all variants. Each row has the variant, its
    factors, ``energy_j``, ``duration_s``, ``params``, ``energy_kind`` and the sources.

    Args:
        architectures: the variants (:func:`design`).
        repetitions: runs per variant.
        steps: training steps per run (SGD on digits, ``batch_size`` images each).
        batch_size: images per step.
        meters: as :class:`~green_callbacks.core.EnergyTracker`.
        seed: seed of the run order and of the weights.
        progress: where one line per repetition goes (default stderr).
    """
    import torch

    from green_callbacks.study.frameworks import digits

    if repetitions < 1 or steps < 1:
        raise ServingConfigError(f"repetitions and steps must be >= 1, got {repetitions}, {steps}")
    x, y = (torch.as_tensor(a[:batch_size]) for a in digits()[:2])
    order = random.Random(seed)
    rows = []
    with EnergyTracker(meters, sample_interval_s=0.05) as tracker:
        source = ", ".join(f"{d.name}={d.label()}" for d in tracker.domains)
        for repetition in range(repetitions):
            shuffled = list(architectures)
            order.shuffle(shuffled)
            for arch in shuffled:
                torch.manual_seed(seed)
                net = arch.build()
                optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
                window = tracker.open("phase", arch.label)
                for _ in range(steps):
                    optimizer.zero_grad()
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                result = tracker.close(window)
                rows.append({
                    "variant": arch.label, "conv": arch.conv, "linear": arch.linear,
                    "relu": "on" if arch.relu else "off", "repetition": repetition,
                    "energy_j": result.energy_j, "duration_s": result.duration_s,
                    "params": sum(p.numel() for p in net.parameters()),
                    "energy_kind": result.kind, "energy_source": source,
                })  # fmt: skip
            print(f"repetition {repetition + 1}/{repetitions}: {len(shuffled)} variants",
                  file=progress if progress is not None else sys.stderr, flush=True)  # fmt: skip
    return rows


def analyse(
    rows: Sequence[Mapping[str, Any]], factors: Sequence[str] = FACTORS
) -> dict[str, list[Any]]:
    """Each factor's levels compared on energy and time, then all variants (``variant``).

    Returns:
        factor -> its :class:`~green_callbacks.study.stats.Comparison` per metric.

    Args:
        rows: what :func:`factorial` returned.
        factors: the factors to compare (those with one level are skipped).
    """
    from green_callbacks.study.stats import compare

    metrics = ["energy_j", "duration_s"]
    return {
        factor: compare(rows, factor, metrics=metrics, source="the factorial runs")
        for factor in [*factors, "variant"]
        if len({str(row[factor]) for row in rows}) > 1
    }
