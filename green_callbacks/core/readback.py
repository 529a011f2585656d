"""Figures read back from files anyone may have written: one error, or None, for every wrong one.

:func:`parse_json` raises :class:`ValueError` for text that is not JSON and for
JSON nested deeper than Python's parser recurses (``[[[[...]]]]`` a hundred
thousand deep raises ``RecursionError`` in :func:`json.loads`), so a reader
catches one exception and turns it into a note; :func:`finite` is a field's
value as a finite number, or None (text, ``null``, ``NaN``, ``1e400``, a
negative energy).

Example:
    >>> parse_json('{"totals": {"energy_j": 1.5}}')["totals"]["energy_j"]
    1.5
    >>> try:
    ...     parse_json("[" * 100_000 + "]" * 100_000)
    ... except ValueError as err:
    ...     print(err)
    JSON nested deeper than Python's parser follows; not a file this package wrote
    >>> finite("12.5"), finite(-5, minimum=0.0), finite(float("nan")), finite(True)
    (12.5, None, None, None)
"""

from __future__ import annotations

import json
import math
from typing import Any


def parse_json(text: str) -> Any:
    """``json.loads(text)``, raising only :class:`ValueError` (deep nesting included)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(
            "JSON nested deeper than Python's parser follows; not a file this package wrote"
        ) from None


def finite(value: Any, minimum: float | None = None) -> float | None:
    """``value`` as a finite float (at least ``minimum``), or None: never a bool or a NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number) or (minimum is not None and number < minimum):
        return None
    return number
