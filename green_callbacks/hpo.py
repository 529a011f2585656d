"""``green-callbacks hpo compare``: search strategies compared on joules, not only on rounds.

The experiment of Yarally's thesis (TU Delft 2022; CAIN 2023) with energy
measured: grid, random, TPE and Gaussian-process searches over Adam's
hyperparameters for a small network on scikit-learn's digits, each repeated,
each trial metered (:func:`green_callbacks.optuna.metered`), and the
sampler's own work (choosing each trial's parameters) metered apart. Per
strategy it reports the rounds to its best accuracy, the
energy to reach a target accuracy, the coefficient of variation of per-trial
energy, and the sampler's time and energy per suggestion, with plots of the
best accuracy so far against rounds and against cumulative joules.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks._optional import require
from green_callbacks.core.atomic import atomic_write, write_json_atomic
from green_callbacks.core.ledger import Ledger
from green_callbacks.core.machine import machine
from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.errors import ConfigError

STRATEGIES = ("grid", "random", "tpe", "gp")
MODELS = ("linear", "poly", "cnn")
GRID_POINTS = 5
"""Values per continuous parameter in the grid (the thesis's partial grid)."""


__all__ = [
    "MODELS", "STRATEGIES", "CompareConfig", "CompareConfigError", "SearchResult", "compare",
    "format_summary", "grid", "objective", "sampler", "search", "search_space", "summarise",
    "timed_sampler",
]  # fmt: skip


class CompareConfigError(ConfigError):
    """A comparison set up wrongly; the message names the value and the fix."""


@dataclass(frozen=True)
class CompareConfig:
    """What to compare.

    Attributes:
        strategies: any of ``grid``, ``random``, ``tpe``, ``gp``.
        model: ``linear`` (one dense layer), ``poly`` (dense on x and x squared)
            or ``cnn`` (the demo's CNN), small versions of the thesis's networks.
        params: 3 (Adam's learning rate, beta1, beta2) or 5 (also eps and weight decay).
        repetitions: searches per strategy.
        rounds: trials per search.
        target: the accuracy whose energy to reach is reported.
        epochs: training epochs per trial.
        meters: energy sources (docs/meters.md).
        seed: base seed (repetition r of every strategy uses seed + r).
        min_gain_per_kj: stop a search once its best accuracy gains less than this
            per kJ over its latest trials (:class:`green_callbacks.optuna.GainStop`);
            None: every search runs all its rounds.
    """

    strategies: Sequence[str] = STRATEGIES
    model: str = "linear"
    params: int = 3
    repetitions: int = 3
    rounds: int = 32
    target: float = 0.9
    epochs: int = 2
    meters: Sequence[str] = ("auto",)
    seed: int = 0
    min_gain_per_kj: float | None = None

    def __post_init__(self) -> None:
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown or not self.strategies:
            raise CompareConfigError(
                f"strategies must be drawn from {STRATEGIES}, got {list(self.strategies)}"
            )
        if self.model not in MODELS:
            raise CompareConfigError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.params not in (3, 5):
            raise CompareConfigError(f"params must be 3 or 5, got {self.params!r}")
        for name in ("repetitions", "rounds", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CompareConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if not 0.0 < self.target <= 1.0:
            raise CompareConfigError(f"target must be an accuracy in (0, 1], got {self.target!r}")
        if self.min_gain_per_kj is not None and not self.min_gain_per_kj >= 0:
            raise CompareConfigError(
                f"min_gain_per_kj must be >= 0 (accuracy per kJ), got {self.min_gain_per_kj!r}"
            )


@dataclass
class SearchResult:
    """One search: per trial its accuracy and energy, and the search's own overhead.

    Attributes:
        strategy: the sampler.
        repetition: which repetition.
        accuracies: held-out accuracy of each trial, in order.
        energies_j: energy of each trial. Units: J.
        overhead_j: energy of the sampler choosing parameters (inside the trials or not;
            the trials' energy includes what it spent inside them). Units: J.
        overhead_s: the sampler's time. Units: s.
        kind: the energy figures' provenance.
    """

    strategy: str
    repetition: int
    accuracies: list[float] = field(default_factory=list)
    energies_j: list[float] = field(default_factory=list)
    overhead_j: float = 0.0
    overhead_s: float = 0.0
    kind: str = ""

    def best_so_far(self) -> list[float]:
        """The best accuracy after each round."""
        best, out = -math.inf, []
        for accuracy in self.accuracies:
            best = max(best, accuracy)
            out.append(best)
        return out

    def rounds_to_best(self) -> int:
        """The round (1-based) at which the search first reached its best accuracy."""
        best = max(self.accuracies)
        return self.accuracies.index(best) + 1

    def energy_to(self, target: float) -> float | None:
        """Cumulative trial energy when the best accuracy first reached ``target``, else None.

        Args:
            target: the accuracy.
        """
        spent = 0.0
        for accuracy, joules in zip(self.accuracies, self.energies_j):
            spent += joules
            if accuracy >= target:
                return spent
        return None


def search_space(params: int) -> dict[str, tuple[float, float, bool]]:
    """Adam's hyperparameters: name -> (low, high, log scale).

    Args:
        params: 3 or 5.
    """
    space = {"lr": (1e-4, 1e-1, True), "beta1": (0.8, 0.99, False), "beta2": (0.9, 0.9999, False)}
    if params == 5:
        space |= {"eps": (1e-9, 1e-6, True), "weight_decay": (0.0, 1e-3, False)}
    return space


def grid(params: int) -> dict[str, list[float]]:
    """Five values per parameter, evenly spaced (on a log scale where the space is).

    Args:
        params: 3 or 5 (:func:`search_space`).
    """
    out = {}
    for name, (low, high, log) in search_space(params).items():
        if log:
            a, b = math.log10(low), math.log10(high)
            out[name] = [10 ** (a + (b - a) * i / (GRID_POINTS - 1)) for i in range(GRID_POINTS)]
        else:
            out[name] = [low + (high - low) * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
    return out


def sampler(strategy: str, params: int, seed: int) -> Any:
    """The Optuna sampler of a strategy (grid: random order, without replacement).

    Args:
        strategy: ``grid``, ``random``, ``tpe`` or ``gp``.
        params: 3 or 5 (the grid's parameters).
        seed: the sampler's seed.
    """
    optuna = require("optuna", "optuna", purpose="green-callbacks hpo")
    if strategy == "grid":
        return optuna.samplers.GridSampler(grid(params), seed=seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5)


def objective(config: CompareConfig) -> Callable[[Any], float]:
    """Train the chosen network on digits with the trial's Adam settings; held-out accuracy.

    Args:
        config: the model, parameters and epochs.
    """
    torch = require("torch", "torch", purpose="green-callbacks hpo")
    from green_callbacks.study.frameworks import digits

    x_train, y_train, x_test, y_test = (torch.as_tensor(a) for a in digits())
    x_train, x_test = x_train[:, 0], x_test[:, 0]  # (n, 8, 8): the networks add their channel
    space = search_space(config.params)

    def network() -> Any:
        nn = torch.nn
        if config.model == "linear":
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        if config.model == "poly":

            class Poly(nn.Module):  # type: ignore[misc,name-defined]
                def __init__(self) -> None:
                    super().__init__()
                    self.layers = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))

                def forward(self, images: Any) -> Any:
                    flat = images.flatten(1)
                    return self.layers(torch.cat([flat, flat * flat], dim=1))

            return Poly()
        return nn.Sequential(
            nn.Unflatten(1, (1, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 10),
        )  # fmt: skip

    def run(trial: Any) -> float:
        settings = {
            name: trial.suggest_float(name, low, high, log=log)
            for name, (low, high, log) in space.items()
        }  # fmt: skip
        torch.manual_seed(trial.number)
        model = network()
        optimizer = torch.optim.Adam(
            model.parameters(), lr=settings["lr"], betas=(settings["beta1"], settings["beta2"]),
            eps=settings.get("eps", 1e-8), weight_decay=settings.get("weight_decay", 0.0),
        )  # fmt: skip
        for _ in range(config.epochs):
            order = torch.randperm(len(x_train))
            for start in range(0, len(order), 32):
                batch = order[start : start + 32]
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            return float((model(x_test).argmax(dim=1) == y_test).float().mean())

    return run


def timed_sampler(base: Any, tracker: EnergyTracker, totals: list[float]) -> Any:
    """``base`` with every call that chooses parameters metered: ``totals`` gets [s, J].

    Optuna samplers may choose inside the objective (at the first ``suggest``),
    so the trials' energy includes them; this measures their share apart.

    Args:
        base: the sampler to meter.
        tracker: a running tracker (windows are opened on it).
        totals: ``[seconds, joules]``, added to at every call.
    """
    optuna = require("optuna", "optuna", purpose="green-callbacks hpo")

    class Timed(optuna.samplers.BaseSampler):  # type: ignore[misc,name-defined]
        def _metered(self, call: Callable[..., Any], *args: Any) -> Any:
            window = tracker.open("phase", "sampler")
            started = time.perf_counter()
            try:
                return call(*args)
            finally:
                totals[0] += time.perf_counter() - started
                totals[1] += tracker.close(window).energy_j

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self._metered(base.infer_relative_search_space, study, trial)

        def sample_relative(self, study: Any, trial: Any, space: Any) -> Any:
            return self._metered(base.sample_relative, study, trial, space)

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            return self._metered(base.sample_independent, study, trial, name, dist)

        def before_trial(self, study: Any, trial: Any) -> None:
            base.before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            base.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            base.reseed_rng()

    return Timed()


def search(config: CompareConfig, strategy: str, repetition: int) -> SearchResult:
    """One metered search: every trial metered, and the whole search, for its overhead.

    Args:
        config: what to search.
        strategy: the sampler.
        repetition: which repetition (its seed is ``config.seed + repetition``).
    """
    optuna = require("optuna", "optuna", purpose="green-callbacks hpo")
    from green_callbacks.optuna import ENERGY_J, KIND, GainStop, metered

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = SearchResult(strategy, repetition)
    wrapped = metered(objective(config), meters=list(config.meters))
    tracker = EnergyTracker(list(config.meters)).start()
    spent = [0.0, 0.0]
    chosen = timed_sampler(sampler(strategy, config.params, config.seed + repetition), tracker,
                           spent)  # fmt: skip
    study = optuna.create_study(direction="maximize", sampler=chosen)
    stop = [] if config.min_gain_per_kj is None else [GainStop(config.min_gain_per_kj)]
    try:
        study.optimize(wrapped, n_trials=config.rounds, callbacks=stop)
    finally:
        total = tracker.stop()
    trials = [t for t in study.trials if t.value is not None]
    result.accuracies = [float(t.value) for t in trials]
    result.energies_j = [float(t.user_attrs[ENERGY_J]) for t in trials]
    result.overhead_s, result.overhead_j = spent
    result.kind = str(trials[0].user_attrs[KIND]) if trials else total.kind
    return result


def compare(
    config: CompareConfig,
    out: Path,
    *,
    progress: TextIO | None = None,
    force_new: bool = False,
    search_one: Callable[[CompareConfig, str, int], SearchResult] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run every strategy's searches, interleaved, and write the results and figures to ``out``.

    Each finished search goes into the folder's run ledger (``runs.jsonl``,
    :mod:`green_callbacks.core.ledger`), keyed by strategy and repetition, so a
    rerun after a crash, or with a strategy or repetitions added, measures only
    the searches the folder lacks. Everything else that shapes a search's
    figures (model, parameters, rounds, epochs, meters, seed, the machine) is
    the folder's definition: a rerun with another is refused, naming the
    difference. The target only reads the figures, so it may change.

    Args:
        config: what to compare.
        out: the folder for ``results.json``, ``searches.csv`` and the figures.
        progress: where one line per search goes (default: stderr).
        force_new: ``out`` holds another comparison: measure into ``out-v2``... instead.
        search_one: the function running one search (default :func:`search`; tests
            pass a fake one).

    Returns:
        The summary per strategy (also in ``results.json``) and the folder written.

    Raises:
        LedgerMismatchError: ``out`` holds a comparison of another definition.
        LedgerLockedError: another process is writing ``out``.
    """
    progress = progress if progress is not None else sys.stderr
    run_search = search_one or search
    settings = asdict(config)
    for name in ("strategies", "repetitions", "target", "meters"):
        settings.pop(name)  # the key, or only what reads the figures; meters: by name below
    if settings["min_gain_per_kj"] is None:  # as folders from before the option define it
        settings.pop("min_gain_per_kj")
    definition = {"config": settings, "meters": list(config.meters), "machine": machine()}
    plan = [(s, r) for r in range(config.repetitions) for s in config.strategies]  # interleaved
    results: list[SearchResult] = []
    with Ledger.open(out, "hpo-compare", definition, force_new=force_new) as ledger:
        folder = ledger.folder
        done = {(s, r): _result(ledger.get({"strategy": s, "repetition": r})) for s, r in plan}
        if search_one is None and any(result is None for result in done.values()):
            optuna = require("optuna", "optuna", purpose="green-callbacks hpo")
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            # one unmetered trial first: the process's first training pays for warm-up (lazy
            # imports, allocator, kernels), which would otherwise land on the first strategy
            optuna.create_study().optimize(objective(config), n_trials=1)
        kept = sum(result is not None for result in done.values())
        if kept:
            print(f"resuming: {kept} of {len(plan)} searches already in {folder}",
                  file=progress, flush=True)  # fmt: skip
        for index, (strategy, repetition) in enumerate(plan, start=1):
            result = done[(strategy, repetition)]
            if result is None:
                started = time.monotonic()
                result = run_search(config, strategy, repetition)
                ledger.append({"strategy": strategy, "repetition": repetition},
                              {"result": asdict(result)})  # fmt: skip
                print(
                    f"[{index}/{len(plan)}] {strategy} #{repetition}: best "
                    f"{max(result.accuracies):.3f} in {result.rounds_to_best()} rounds, "
                    f"{sum(result.energies_j):.4g} J ({time.monotonic() - started:.1f} s)",
                    file=progress, flush=True,
                )  # fmt: skip
            results.append(result)
        summary = summarise(results, config)
        everything = {"config": asdict(config), "strategies": summary,
                      "searches": [asdict(r) for r in results]}  # fmt: skip
        write_json_atomic(folder / "results.json", everything)
        table = _searches_csv(results, config.target)
        atomic_write(folder / "searches.csv", lambda part: part.write_text(table, encoding="utf-8"))
        _plots(results, config, folder)
    return summary, folder


def _result(record: dict[str, Any] | None) -> SearchResult | None:
    """A search read back from its ledger record; None (measured again) if it is damaged."""
    data = (record or {}).get("result")
    if not isinstance(data, dict):
        return None
    try:
        result = SearchResult(**data)
        accuracies = [float(a) for a in result.accuracies]
        energies = [float(j) for j in result.energies_j]
    except (TypeError, ValueError):
        return None
    if not accuracies or len(accuracies) != len(energies):
        return None
    result.accuracies, result.energies_j = accuracies, energies
    return result


def summarise(results: Sequence[SearchResult], config: CompareConfig) -> dict[str, Any]:
    """Per strategy: medians over repetitions, energy spread, the sampler's cost per suggestion.

    Args:
        results: every search.
        config: the comparison (its target and rounds).
    """
    out: dict[str, Any] = {}
    for strategy in config.strategies:
        mine = [r for r in results if r.strategy == strategy]
        energies = [j for r in mine for j in r.energies_j]
        reached = [e for r in mine if (e := r.energy_to(config.target)) is not None]
        suggestions = sum(len(r.accuracies) for r in mine) or 1
        mean = statistics.fmean(energies) if energies else 0.0
        out[strategy] = {
            "best_accuracy_median": statistics.median(max(r.accuracies) for r in mine),
            "rounds_to_best_median": statistics.median(r.rounds_to_best() for r in mine),
            "energy_to_target_median_j": statistics.median(reached) if reached else None,
            "reached_target": f"{len(reached)}/{len(mine)}",
            "rounds_median": statistics.median(len(r.accuracies) for r in mine),
            "energy_spent_median_j": statistics.median(sum(r.energies_j) for r in mine),
            "trial_energy_cv": statistics.pstdev(energies) / mean if mean else None,
            "sampler_s_per_suggestion": sum(r.overhead_s for r in mine) / suggestions,
            "sampler_j_per_suggestion": sum(r.overhead_j for r in mine) / suggestions,
            "kind": mine[0].kind if mine else "",
        }
    return out


def _searches_csv(results: Sequence[SearchResult], target: float) -> str:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["strategy", "repetition", "best_accuracy", "rounds_to_best",
                     "energy_to_target_j", "energy_j", "overhead_j", "overhead_s",
                     "kind"])  # fmt: skip
    for r in results:
        to_target = r.energy_to(target)
        writer.writerow([r.strategy, r.repetition, max(r.accuracies), r.rounds_to_best(),
                         "" if to_target is None else to_target, sum(r.energies_j),
                         r.overhead_j, r.overhead_s, r.kind])  # fmt: skip
    return text.getvalue()


def _plots(results: Sequence[SearchResult], config: CompareConfig, out: Path) -> None:
    pyplot = headless_pyplot("study", purpose="hpo figures")
    kind = results[0].kind if results else ""
    figure, (by_round, by_energy) = pyplot.subplots(1, 2, figsize=(11, 4))
    for index, strategy in enumerate(config.strategies):
        colour = f"C{index}"
        for n, r in enumerate(x for x in results if x.strategy == strategy):
            best = r.best_so_far()
            cumulative = [sum(r.energies_j[: i + 1]) for i in range(len(r.energies_j))]
            label = strategy if n == 0 else None
            by_round.plot(range(1, len(best) + 1), best, color=colour, alpha=0.6, label=label)
            by_energy.plot(cumulative, best, color=colour, alpha=0.6, label=label)
    for axis in (by_round, by_energy):
        axis.axhline(config.target, color="grey", linestyle=":", linewidth=1)
        axis.set_ylabel("best accuracy so far")
        axis.grid(alpha=0.3)
        axis.legend()
    by_round.set_xlabel("round")
    by_energy.set_xlabel(f"cumulative trial energy (J, {kind})")
    figure.suptitle(f"Search strategies on {config.model} ({config.params} parameters); "
                    f"dotted: target {config.target}")  # fmt: skip
    figure.tight_layout()
    figure.savefig(out / "best_so_far.png", dpi=110)
    pyplot.close(figure)


def format_summary(summary: dict[str, Any], target: float) -> str:
    """The per-strategy summary as a table.

    Args:
        summary: what :func:`summarise` returned.
        target: the accuracy target it used.
    """
    lines = [
        f"{'strategy':<10}{'best acc':>10}{'to best':>8}{f'J to {target:g}':>14}{'reached':>9}"
        f"{'rounds':>8}{'J spent':>10}{'trial CV':>10}{'sampler s':>11}{'sampler J':>11}",
    ]
    for name, s in summary.items():
        to_target = s["energy_to_target_median_j"]
        cv = s["trial_energy_cv"]
        lines.append(
            f"{name:<10}{s['best_accuracy_median']:>10.3f}{s['rounds_to_best_median']:>8g}"
            f"{'-' if to_target is None else f'{to_target:.4g}':>14}{s['reached_target']:>9}"
            f"{s['rounds_median']:>8g}{s['energy_spent_median_j']:>10.4g}"
            f"{'-' if cv is None else f'{cv:.3f}':>10}{s['sampler_s_per_suggestion']:>11.4f}"
            f"{s['sampler_j_per_suggestion']:>11.4g}"
        )
    kinds = {s["kind"] for s in summary.values()}
    lines.append(f"(medians over repetitions; energy {', '.join(sorted(kinds))}; sampler: its "
                 "own choosing, per suggestion, also inside the trials' figures)")  # fmt: skip
    return "\n".join(lines)
