"""argparse types shared by the command line's subcommands: a clear exit-2 line for bad values."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def number(*, above: float | None = None, at_least: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number in range, or an exit-2 line that says which."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (
            not math.isfinite(value)
            or (above is not None and not value > above)
            or (at_least is not None and not value >= at_least)
        ):
            bound = f"> {above:g}" if above is not None else f">= {at_least:g}"
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse
