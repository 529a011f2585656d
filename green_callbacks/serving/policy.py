"""Batching policies: how many waiting requests a server sends to the model, and when.

Each written as a short spec:

- ``fixed:B``: dispatch when B requests are waiting (the thesis's fixed batches);
- ``greedy`` or ``greedy:CAP``: dispatch everything waiting as soon as the model
  is free, up to CAP (the thesis capped at 128; without CAP a server that falls
  behind sends ever larger batches);
- ``maxwait:B/T``: dispatch at B requests, or as soon as the oldest has waited
  T ms (the dynamic batching of serving systems: a batch never waits for ever).

At the end of the stream every policy sends what is left, so no request waits
for companions that will never come.

Example:
    >>> policy = parse_policy("maxwait:8/20")
    >>> policy.take(waiting=3, oldest_wait_s=0.005, more_coming=True)
    0
    >>> policy.take(waiting=3, oldest_wait_s=0.020, more_coming=True)
    3
    >>> parse_policy("greedy:4").take(waiting=10, oldest_wait_s=0.0, more_coming=True)
    4
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from green_callbacks.serving.stream import ServingConfigError

POLICY_FORMS = ("fixed:B", "greedy[:CAP]", "maxwait:B/T")
TOLERANCE_S = 1e-9
"""Clock arithmetic slack when comparing a wait with T (a wait of T - 1e-12 s is T)."""


@dataclass(frozen=True)
class Policy:
    """A batching policy.

    Attributes:
        kind: ``fixed``, ``greedy`` or ``maxwait``.
        batch: the batch size (fixed, maxwait) or the cap (greedy; None: no cap).
        max_wait_s: ``maxwait``'s longest wait of the oldest request. Units: s.
        label: the spec it was parsed from.
    """

    kind: str
    batch: int | None
    max_wait_s: float | None = None
    label: str = ""

    def take(self, waiting: int, oldest_wait_s: float, more_coming: bool) -> int:
        """How many of the ``waiting`` requests to dispatch now; 0 to keep waiting.

        Args:
            waiting: requests in the queue.
            oldest_wait_s: how long the oldest of them has waited. Units: s.
            more_coming: whether the stream has requests still to arrive.
        """
        if waiting == 0:
            return 0
        limit = waiting if self.batch is None else min(waiting, self.batch)
        if self.kind == "greedy" or limit == self.batch or not more_coming:
            return limit
        if self.kind == "maxwait" and oldest_wait_s + TOLERANCE_S >= (self.max_wait_s or 0.0):
            return limit
        return 0

    def deadline_s(self, oldest_arrival_s: float) -> float | None:
        """When the queue's oldest request forces a dispatch (maxwait), else None. Units: s."""
        if self.kind != "maxwait" or self.max_wait_s is None:
            return None
        return oldest_arrival_s + self.max_wait_s


def parse_policy(spec: str) -> Policy:
    """A :class:`Policy` from its spec (see the module's list).

    Args:
        spec: ``fixed:B``, ``greedy``, ``greedy:CAP`` or ``maxwait:B/T`` (T in ms).

    Raises:
        ServingConfigError: an unknown kind, or a size or wait that is not positive.
    """
    kind, _, rest = spec.partition(":")
    if kind == "greedy":
        return Policy("greedy", _size(rest, spec) if rest else None, label=spec)
    if kind == "fixed" and rest:
        return Policy("fixed", _size(rest, spec), label=spec)
    if kind == "maxwait" and "/" in rest:
        size, _, wait = rest.partition("/")
        try:
            wait_ms = float(wait)
        except ValueError:
            wait_ms = math.nan
        if not math.isfinite(wait_ms) or wait_ms < 0:
            raise ServingConfigError(
                f"batching policy {spec!r}: the wait {wait!r} must be a number of ms >= 0"
            )
        return Policy("maxwait", _size(size, spec), wait_ms / 1000.0, label=spec)
    raise ServingConfigError(
        f"batching policy {spec!r} is not one of {', '.join(POLICY_FORMS)} "
        "(e.g. fixed:32, greedy:128, maxwait:32/50 for 32 requests or 50 ms)"
    )


def _size(text: str, spec: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise ServingConfigError(
            f"batching policy {spec!r}: the batch size {text!r} must be a whole number >= 1"
        )
    return size
