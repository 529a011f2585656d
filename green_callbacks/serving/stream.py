"""Request streams: when each request arrives, in seconds from the start of serving.

Three kinds, each written as a short spec:

- ``regular:RATE``: one request every 1/RATE s (the thesis's simulation);
- ``poisson:RATE`` or ``poisson:RATE:SEED``: exponential gaps of mean 1/RATE s,
  reproducible for a seed (default 0);
- ``replay:PATH``: timestamps from a file, one per line in seconds (a CSV's
  first column; a header line is allowed), replayed relative to the first.

Example:
    >>> stream = parse_stream("regular:4")
    >>> stream.arrivals(3), stream.rate_rps
    ([0.0, 0.25, 0.5], 4.0)
    >>> parse_stream("poisson:100:7").arrivals(2) == parse_stream("poisson:100:7").arrivals(2)
    True
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

from green_callbacks.errors import ConfigError

STREAM_FORMS = ("regular:RATE", "poisson:RATE[:SEED]", "replay:PATH")


class ServingConfigError(ConfigError):
    """A stream, policy or serving setting that cannot be used; the message says what to pass."""


@dataclass(frozen=True)
class Stream:
    """Arrival times of requests.

    Attributes:
        kind: ``regular``, ``poisson`` or ``replay``.
        rate_rps: mean arrival rate. Units: requests/s.
        seed: the Poisson stream's seed.
        times: a replayed stream's arrivals, from 0. Units: s.
        label: the spec it was parsed from.
    """

    kind: str
    rate_rps: float
    seed: int = 0
    times: tuple[float, ...] = ()
    label: str = ""

    def arrivals(self, requests: int) -> list[float]:
        """The first ``requests`` arrival times (fewer when a replayed file has fewer). Units: s."""
        if self.kind == "regular":
            return [i / self.rate_rps for i in range(requests)]
        if self.kind == "poisson":
            draw = random.Random(self.seed).expovariate
            times, now = [0.0], 0.0
            while len(times) < requests:
                now += draw(self.rate_rps)
                times.append(now)
            return times[:requests]
        return list(self.times[:requests])


def parse_stream(spec: str) -> Stream:
    """A :class:`Stream` from its spec (see the module's list).

    Args:
        spec: ``regular:RATE``, ``poisson:RATE[:SEED]`` or ``replay:PATH`` (RATE
            in requests/s).

    Raises:
        ServingConfigError: an unknown kind, a rate that is not a positive
            number, or a replay file that is missing, empty or not in time order.
    """
    kind, _, rest = spec.partition(":")
    if kind == "replay":
        return _replay(Path(rest), spec)
    if kind not in ("regular", "poisson") or not rest:
        raise ServingConfigError(
            f"request stream {spec!r} is not one of {', '.join(STREAM_FORMS)} "
            "(e.g. regular:32, poisson:64, replay:arrivals.csv)"
        )
    rate_text, _, seed_text = rest.partition(":")
    rate = _rate(rate_text, spec)
    if kind == "regular" and seed_text:
        raise ServingConfigError(
            f"{spec!r}: a regular stream takes no seed; write regular:{rate_text}"
        )
    try:
        seed = int(seed_text) if seed_text else 0
    except ValueError:
        raise ServingConfigError(f"{spec!r}: the seed {seed_text!r} is not an integer") from None
    return Stream(kind, rate, seed, label=spec)


def _rate(text: str, spec: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or rate <= 0:
        raise ServingConfigError(
            f"{spec!r}: the rate {text!r} must be a positive number of requests per second"
        )
    return rate


def _replay(path: Path, spec: str) -> Stream:
    if not path.is_file():
        raise ServingConfigError(f"{spec!r}: no file {path}; give a file of arrival timestamps")
    times: list[float] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip():
                continue
            try:
                value = float(row[0])
            except ValueError:
                if times or number > 1:
                    raise ServingConfigError(
                        f"{path}:{number}: {row[0]!r} is not a timestamp in seconds"
                    ) from None
                continue  # a header line
            if not math.isfinite(value):
                raise ServingConfigError(f"{path}:{number}: {row[0]!r} is not a finite timestamp")
            if times and value < times[-1]:
                raise ServingConfigError(
                    f"{path}:{number}: timestamp {value} comes before the previous one "
                    f"({times[-1]}); sort the file by time (sort -n)"
                )
            times.append(value)
    if len(times) < 2:
        raise ServingConfigError(
            f"{path} holds {len(times)} timestamp(s); a stream needs two or more"
        )
    span = times[-1] - times[0]
    if span <= 0:
        raise ServingConfigError(f"{path}: every request arrives at the same instant ({times[0]})")
    relative = tuple(t - times[0] for t in times)
    return Stream("replay", (len(times) - 1) / span, times=relative, label=spec)
