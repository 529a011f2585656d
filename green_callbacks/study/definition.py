"""A study in a TOML file: what to compare, on which workloads, how often, in which order.

Example ``study.toml``::

    [study]
    repetitions = 10            # runs per treatment, workload and phase
    warmup = 1                  # runs first, recorded, left out of the statistics
    cooldown_s = 60             # a fixed pause before each run...
    # cooldown = { stable_within_pct = 5, max_s = 120 }   # ...or until idle power settles
    order = "interleaved"       # randomised blocks (seed recorded); "blocked": fixed order
    seed = 0
    timeout_s = 600
    meters = ["auto"]
    phases = ["train", "inference"]

    [factors]                   # every combination is a treatment
    framework = ["lightning", "keras-torch"]

    [[workloads]]
    name = "cnn"
    entry = "my_package.workloads:digits_cnn"

A workload is a function ``entry(phase=..., **args, **treatment)`` that runs
one phase of the work and returns its quality metric (a number, or a dict of
them). If it takes a ``measure`` argument, only what it runs inside
``with measure():`` is metered (the fit, not building the model or the data);
else the whole call is.

Example:
    >>> study = parse({"factors": {"size": [1, 2]},
    ...                "workloads": [{"name": "w", "entry": "math:fsum"}],
    ...                "study": {"repetitions": 2, "phases": ["train"]}}, "inline")
    >>> [(r.treatment, r.repetition) for r in plan(study)][:3]
    [({'size': 1}, 0), ({'size': 2}, 0), ({'size': 2}, 1)]
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from green_callbacks.errors import ConfigError
from green_callbacks.meters.spec import check_meters

ORDERS = ("interleaved", "blocked")
PHASES = ("train", "inference")
STUDY_KEYS = {
    "repetitions", "warmup", "cooldown_s", "cooldown", "order", "seed", "timeout_s", "meters",
    "phases", "profile",
}  # fmt: skip
TOP_KEYS = {"study", "factors", "workloads"}
WORKLOAD_KEYS = {"name", "entry", "args"}


class StudyDefinitionError(ConfigError):
    """A study file that cannot be run as written; the message names the file, key and fix."""


@dataclass(frozen=True)
class Cooldown:
    """The pause before each run, during which idle power is measured.

    Attributes:
        seconds: a fixed pause; or, with ``stable_within_pct``, the most to wait. Units: s.
        stable_within_pct: wait until two consecutive one-second idle power
            readings differ by less than this. Units: %.
    """

    seconds: float = 0.0
    stable_within_pct: float | None = None


@dataclass(frozen=True)
class Workload:
    """One workload: a name and the ``module:function`` that runs one phase of it.

    Attributes:
        name: as reported.
        entry: ``module:function``.
        args: keyword arguments every run of it gets (not a factor: the same for all).
    """

    name: str
    entry: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A parsed study file.

    Attributes:
        factors: factor name -> its levels; every combination is a treatment.
        workloads: what runs.
        phases: ``train`` and/or ``inference``.
        repetitions: measured runs per treatment, workload and phase.
        warmup: runs before those, recorded and left out of the statistics.
        cooldown: the pause before each run.
        order: ``interleaved`` (randomised blocks) or ``blocked``.
        seed: the seed of the randomised order.
        timeout_s: a run longer than this is stopped and recorded as failed. Units: s.
        meters: the energy sources (spec strings, docs/meters.md).
        profile: keep a cProfile of every run (the functions above 1 % of time).
        source: the file it came from.
    """

    factors: dict[str, list[Any]]
    workloads: list[Workload]
    phases: list[str] = field(default_factory=lambda: ["train"])
    repetitions: int = 10
    warmup: int = 0
    cooldown: Cooldown = Cooldown()
    order: str = "interleaved"
    seed: int = 0
    timeout_s: float = 3600.0
    meters: list[str] = field(default_factory=lambda: ["auto"])
    profile: bool = False
    source: str = "study"


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan; ``index`` is its place in the order and its identity on resume.

    Attributes:
        index: position in the run order (0-based).
        block: the repetition block it belongs to (warm-ups: negative).
        workload: the workload's name.
        entry: its ``module:function``.
        args: its fixed keyword arguments.
        phase: ``train`` or ``inference``.
        treatment: factor name -> level.
        repetition: 0-based among the measured runs of its cell (warm-ups: negative).
        warmup: a warm-up run (left out of the statistics).
    """

    index: int
    block: int
    workload: str
    entry: str
    args: dict[str, Any]
    phase: str
    treatment: dict[str, Any]
    repetition: int
    warmup: bool


def load(path: str | Path) -> Study:
    """Read and check a study file.

    Args:
        path: the TOML file.

    Raises:
        StudyDefinitionError: unknown key, wrong type, a factor with one level,
            a workload that cannot be imported...
    """
    try:
        tomllib = importlib.import_module("tomllib")
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        raise StudyDefinitionError("study files need Python 3.11 or newer (tomllib)") from None
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as err:
        raise StudyDefinitionError(f"cannot read study file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise StudyDefinitionError(f"study file {path} is not valid TOML: {err}") from err
    return parse(data, str(path))


def parse(data: Mapping[str, Any], source: str) -> Study:
    """Check a study's contents (as :func:`load` reads them) and build it.

    Args:
        data: the TOML document as a mapping.
        source: how errors name the file.
    """

    def fail(message: str) -> StudyDefinitionError:
        return StudyDefinitionError(f"{source}: {message}")

    unknown = set(data) - TOP_KEYS
    if unknown:
        raise fail(f"unknown section {sorted(unknown)}; a study has {sorted(TOP_KEYS)}")
    settings = dict(data.get("study", {}))
    unknown = set(settings) - STUDY_KEYS
    if unknown:
        raise fail(f"unknown key {sorted(unknown)} in [study]; known: {sorted(STUDY_KEYS)}")
    factors = data.get("factors")
    if not isinstance(factors, Mapping) or not factors:
        raise fail("needs a [factors] table: name = [level, level, ...]")
    for name, levels in factors.items():
        if not isinstance(levels, list) or len(levels) < 2 or len(set(map(str, levels))) < 2:
            raise fail(
                f"factor {name!r} needs two or more distinct levels to compare, got {levels!r}"
            )
    workloads = data.get("workloads")
    if not isinstance(workloads, list) or not workloads:
        raise fail('needs at least one [[workloads]] with name = "..." and entry = "module:fn"')
    parsed = []
    for item in workloads:
        if not isinstance(item, Mapping) or not {"name", "entry"} <= set(item) <= WORKLOAD_KEYS:
            raise fail(f"each [[workloads]] has name, entry and optionally args, got {item!r}")
        if not isinstance(item.get("args", {}), Mapping):
            raise fail(f"workload {item['name']!r}: args must be a table, got {item['args']!r}")
        entry = str(item["entry"])
        module, sep, function = entry.partition(":")
        if not sep or not module or not function:
            raise fail(f"workload {item['name']!r}: entry must be 'module:function', got {entry!r}")
        _check_importable(module, fail)
        parsed.append(Workload(str(item["name"]), entry, dict(item.get("args", {}))))
    phases = settings.get("phases", ["train"])
    if not isinstance(phases, list) or not phases or set(phases) - set(PHASES):
        raise fail(f"phases must be a list drawn from {PHASES}, got {phases!r}")
    order = settings.get("order", "interleaved")
    if order not in ORDERS:
        raise fail(f"order must be one of {ORDERS}, got {order!r}")
    meters = settings.get("meters", ["auto"])
    meters = [meters] if isinstance(meters, str) else meters
    check_meters(meters)
    return Study(
        factors={str(k): list(v) for k, v in factors.items()},
        workloads=parsed,
        phases=list(phases),
        repetitions=_whole(settings, "repetitions", 10, 1, fail),
        warmup=_whole(settings, "warmup", 0, 0, fail),
        cooldown=_cooldown(settings, fail),
        order=order,
        seed=_whole(settings, "seed", 0, 0, fail),
        timeout_s=_positive(settings, "timeout_s", 3600.0, fail),
        meters=list(meters),
        profile=bool(settings.get("profile", False)),
        source=source,
    )


def _check_importable(module: str, fail: Any) -> None:
    try:
        found = importlib.util.find_spec(module)  # finds it without importing it
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise fail(
            f"workload module {module!r} cannot be imported here; install it or put its "
            "folder on PYTHONPATH"
        )


def _whole(settings: Mapping[str, Any], key: str, default: int, least: int, fail: Any) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise fail(f"{key} must be a whole number >= {least}, got {value!r}")
    return value


def _positive(settings: Mapping[str, Any], key: str, default: float, fail: Any) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise fail(f"{key} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _cooldown(settings: Mapping[str, Any], fail: Any) -> Cooldown:
    if "cooldown" in settings and "cooldown_s" in settings:
        raise fail("give cooldown_s (fixed) or cooldown = {stable_within_pct, max_s}, not both")
    if "cooldown" not in settings:
        seconds = settings.get("cooldown_s", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise fail(f"cooldown_s must be a number of seconds >= 0, got {seconds!r}")
        return Cooldown(float(seconds))
    table = settings["cooldown"]
    if not isinstance(table, Mapping) or set(table) != {"stable_within_pct", "max_s"}:
        raise fail(f"cooldown must be {{stable_within_pct = 5, max_s = 120}}, got {table!r}")
    pct, cap = table["stable_within_pct"], table["max_s"]
    if not all(isinstance(v, (int, float)) and v > 0 for v in (pct, cap)):
        raise fail(f"cooldown's stable_within_pct and max_s must be > 0, got {table!r}")
    return Cooldown(float(cap), float(pct))


def treatments(study: Study) -> list[dict[str, Any]]:
    """Every combination of the factors' levels, in the file's order.

    Args:
        study: the parsed study.
    """
    names = list(study.factors)
    return [dict(zip(names, combo)) for combo in itertools.product(*study.factors.values())]


def plan(study: Study) -> list[PlannedRun]:
    """The order the runs go in: warm-ups first, then the measured repetitions.

    ``interleaved``: each repetition is a block holding every treatment,
    workload and phase once, shuffled with ``random.Random(seed + block)``, so
    that drift and order effects spread over the treatments. ``blocked``: all
    repetitions of one cell, then the next (the published study's order). The
    plan depends only on the file, so a resumed study finds its runs again.

    Args:
        study: the parsed study.
    """
    cells = [
        (workload, phase, treatment)
        for workload in study.workloads for phase in study.phases for treatment in treatments(study)
    ]  # fmt: skip
    order: list[tuple[int, int, Workload, str, dict[str, Any], bool]] = []
    for w in range(study.warmup):
        order += [(-1 - w, -1 - w, *cell, True) for cell in cells]
    if study.order == "blocked":
        order += [(r, r, *cell, False) for cell in cells for r in range(study.repetitions)]
    else:
        for block in range(study.repetitions):
            shuffled = list(cells)
            random.Random(study.seed + block).shuffle(shuffled)
            order += [(block, block, *cell, False) for cell in shuffled]
    return [
        PlannedRun(
            i,
            block,
            workload.name,
            workload.entry,
            dict(workload.args),
            phase,
            dict(treatment),
            rep,
            warm,
        )
        for i, (block, rep, workload, phase, treatment, warm) in enumerate(order)
    ]


FRAMEWORK_WORKLOADS = ("recommender", "digits_cnn", "char_lm")


def preset(name: str, *, quick: bool = False) -> Study:
    """A ready-made study.

    ``frameworks``: Lightning against Keras 3 on TensorFlow and on torch, on
    the twin workloads of :mod:`green_callbacks.study.frameworks` (a
    recommender, a CNN, a language model), training and inference: 10
    repetitions after a warm-up, 10 s cooldowns. ``quick``: 3 repetitions of
    one-epoch fits, no warm-up, 1 s cooldowns (about 8 minutes on 2 CPU cores).

    Args:
        name: ``frameworks``.
        quick: the short form.
    """
    if name != "frameworks":
        raise StudyDefinitionError(f"unknown preset {name!r}; presets: frameworks")
    args = {"epochs": 1} if quick else {}
    return parse(
        {
            "study": {
                "repetitions": 3 if quick else 10, "warmup": 0 if quick else 1,
                "cooldown_s": 1.0 if quick else 10.0, "phases": list(PHASES),
                "timeout_s": 900, "meters": ["auto"],
            },
            "factors": {"framework": ["lightning", "keras-tensorflow", "keras-torch"]},
            "workloads": [
                {"name": w, "entry": f"green_callbacks.study.frameworks:{w}", "args": args}
                for w in FRAMEWORK_WORKLOADS
            ],
        },
        f"preset {name}{' (quick)' if quick else ''}",
    )  # fmt: skip
