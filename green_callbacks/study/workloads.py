"""Workloads that ship with the package, for trying the study harness anywhere.

Each takes ``phase`` and the treatment's levels as keyword arguments and
returns its quality metric. They need nothing beyond the standard library.
"""

from __future__ import annotations


def spin(phase: str, size: int = 20000, rounds: int = 20) -> float:
    """A CPU-bound loop: ``rounds`` sums of squares over ``size`` numbers (inference: half).

    Its cost grows with ``size``, so a study over ``size`` has a known winner.

    Args:
        phase: ``train`` or ``inference``.
        size: numbers per round.
        rounds: rounds of work (inference runs half as many).

    Returns:
        A quality figure that does not depend on the treatment (1.0).
    """
    total = 0
    for _ in range(rounds if phase == "train" else max(rounds // 2, 1)):
        total += sum(i * i for i in range(size))
    return 1.0 if total > 0 else 0.0
