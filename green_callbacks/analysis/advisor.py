"""The energy-pattern advisor: a run's recorded figures in, one finding per pattern out.

The patterns are the eight of Shanbhag et al.'s catalogue of energy patterns
for deep learning (EASE 2022) and the diminishing-returns check of green-AI
practice (accuracy flattens long before energy does). Each rule is a small
function from a :class:`~green_callbacks.analysis.run.RunRecord` and the
:class:`Thresholds` to a :class:`Finding`: a verdict (``applies``, ``does not
apply`` or ``cannot tell``) with its reason, the evidence with its provenance,
a saving where one can be estimated (always labelled an estimate), and the
change in this package that acts on it. A rule without the figures it needs
answers ``cannot tell`` and says which figure is missing; it never guesses.
docs/advisor.md documents every rule and threshold.

Example, a run whose accuracy flattened:
    >>> from green_callbacks.analysis.run import RunRecord
    >>> run = RunRecord("example", energy_kind="measured", epochs=[
    ...     {"epoch": e, "val_acc": a, "energy/train_epoch_j": 1000.0}
    ...     for e, a in enumerate([0.50, 0.70, 0.80, 0.85, 0.851, 0.852, 0.852, 0.853])])
    >>> finding = diminishing_returns(run, Thresholds())
    >>> finding.verdict, finding.action  # doctest: +ELLIPSIS
    ('applies', 'EnergyEarlyStopping(monitor="val_acc", mode="max", min_gain_per_kj=0.012, ...')
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from green_callbacks.analysis.run import QUALITY_KEYS, RunRecord
from green_callbacks.core import keys
from green_callbacks.core.units import human_duration
from green_callbacks.policies.memory import LeakWatch
from green_callbacks.policies.stopping import StoppingConfig, StoppingPolicy

APPLIES, DOES_NOT_APPLY, CANNOT_TELL = "applies", "does not apply", "cannot tell"
STANDARD_ARCHITECTURES = (
    "resnet",
    "vgg",
    "densenet",
    "mobilenet",
    "efficientnet",
    "convnext",
    "vit",
    "swin",
    "alexnet",
    "shufflenet",
    "regnet",
    "bert",
    "gpt2",
    "roberta",
    "distilbert",
    "t5",
    "llama",
    "albert",
    "bart",
    "deberta",
    "electra",
    "gpt",
    "mistral",
    "whisper",
    "wav2vec2",
    "xception",
    "inception",
    "nasnet",
    "squeezenet",
    "googlenet",
    "mnasnet",
    "visiontransformer",
)
"""Names (lower case, a prefix of the architecture) with public pre-trained weights."""


@dataclass(frozen=True)
class Thresholds:
    """The advisor's thresholds; each documented with its source in docs/advisor.md.

    Attributes:
        patience: epochs the gain per kJ is measured over (as ``EnergyEarlyStopping``).
        flat_share: accuracy counts as flattened when its gain per kJ over the last
            ``patience`` epochs falls below this share of its gain per kJ over the first.
        min_gain_per_kj: a fixed gain per kJ instead of ``flat_share`` (metric units / kJ).
        long_run_s: a run at least this long should checkpoint. Units: s.
        data_wait_share: step time waiting for data above which the input pipeline is
            the bottleneck.
        leak_mib_per_epoch: memory growth per epoch counted as a leak. Units: MiB.
        high_j_per_sample: inference energy per sample above which compression is
            worth trying. Units: J.
        compress_params: parameters from which pruning and quantization can cut inference.
        distill_params: parameters from which a smaller student is worth training.
        python_share: share of the training step running Python in the user's code
            above which the step is Python-bound.
        line_calls_per_sample: calls per sample from one line of the user's code in a
            step from which the line loops over the batch.
    """

    patience: int = 3
    flat_share: float = 0.1
    min_gain_per_kj: float | None = None
    long_run_s: float = 3600.0
    data_wait_share: float = 0.2
    leak_mib_per_epoch: float = 64.0
    high_j_per_sample: float = 0.01
    compress_params: int = 100_000
    distill_params: int = 1_000_000
    python_share: float = 0.5
    line_calls_per_sample: float = 1.0


@dataclass(frozen=True)
class Finding:
    """One pattern judged on one run.

    Attributes:
        pattern: ``P1`` ... ``P8`` or ``returns``.
        title: the pattern in words.
        verdict: ``applies``, ``does not apply`` or ``cannot tell``.
        reason: why, with the figures.
        evidence: the figures used, each with its provenance.
        saving: what following it would save, labelled an estimate, or None.
        action: the change in this package that acts on it, or None.
    """

    pattern: str
    title: str
    verdict: str
    reason: str
    evidence: dict[str, str] = field(default_factory=dict)
    saving: str | None = None
    action: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)


def _kind(run: RunRecord) -> str:
    return run.energy_kind or "provenance unknown"


def _returns_inputs(
    run: RunRecord, t: Thresholds
) -> tuple[str, dict[int, float], list[tuple[int, float]], float] | str:
    """The quality key, energy per epoch, the points and the gain-per-kJ threshold; or why not."""
    key = run.quality_key
    energy = dict(run.epoch_energy())
    if key is None:
        return f"the run logged no quality metric per epoch (looked for {', '.join(QUALITY_KEYS)})"
    if not energy:
        return "the run logged no energy per epoch (energy/train_epoch_j)"
    points = [(e, v) for e, v in run.series(key) if e in energy]
    if len(points) < 2 * t.patience + 1:
        return (
            f"{len(points)} epochs with {key} and energy; the check needs "
            f"{2 * t.patience + 1} (twice patience={t.patience}, plus one)"
        )
    threshold = t.min_gain_per_kj
    if threshold is None:
        first_kj = sum(energy[e] for e, _ in points[1 : t.patience + 1]) / 1000.0
        early = (points[t.patience][1] - points[0][1]) / first_kj if first_kj > 0 else 0.0
        threshold = float(f"{t.flat_share * early:.2g}") if early > 0 else 0.0
    return key, energy, points, threshold


def would_stop(run: RunRecord, thresholds: Thresholds) -> int | None:
    """The epoch after which ``EnergyEarlyStopping`` would have stopped this run, or None.

    Args:
        run: the run's record.
        thresholds: ``patience`` and ``flat_share`` or ``min_gain_per_kj``.
    """
    inputs = _returns_inputs(run, thresholds)
    if isinstance(inputs, str):
        return None
    key, energy, points, threshold = inputs
    return _stopping_epoch(points, energy, key, threshold, thresholds.patience)


def diminishing_returns(run: RunRecord, t: Thresholds) -> Finding:
    """Accuracy per kJ flattened: the ``EnergyEarlyStopping`` setting that stops there."""
    title = "accuracy flattens long before energy does"
    inputs = _returns_inputs(run, t)
    if isinstance(inputs, str):
        return Finding("returns", title, CANNOT_TELL, inputs)
    key, energy, points, threshold = inputs
    stop = _stopping_epoch(points, energy, key, threshold, t.patience)
    evidence = {
        key: f"{points[0][1]:.4g} -> {points[-1][1]:.4g} over {len(points)} epochs",
        "energy": f"{sum(energy.values()):.4g} J in the epochs ({_kind(run)})",
    }
    if run.epoch_stride > 1:  # patience then counts groups, not epochs
        evidence["epochs"] = (
            f"read as {len(points)} groups of {run.epoch_stride}: patience={t.patience} "
            f"groups is {t.patience * run.epoch_stride} epochs"
        )
    action = (
        f'EnergyEarlyStopping(monitor="{key}", mode="max", '
        f"min_gain_per_kj={threshold:g}, patience={t.patience})"
    )
    if stop is None:
        return Finding(
            "returns",
            title,
            DOES_NOT_APPLY,
            f"{key} still gained at least {threshold:g} per kJ in every window of "
            f"{t.patience} epochs",
            evidence,
        )
    after = [e for e, _ in points if e > stop]
    saved = sum(energy[e] for e in after)
    lost = points[-1][1] - dict(points)[stop]
    return Finding(
        "returns",
        title,
        APPLIES,
        f"after epoch {stop} {key} gained less than {threshold:g} per kJ over {t.patience} "
        f"epochs; the {len(after)} epoch{'s' if len(after) > 1 else ''} after it added "
        f"{lost:+.4g} {key}",
        evidence,
        f"about {saved:.4g} J ({saved / sum(energy.values()):.0%} of the epochs' "
        f"energy; an estimate from this run's own epochs, {_kind(run)})",
        action,
    )


def _stopping_epoch(
    points: Sequence[tuple[int, float]],
    energy: dict[int, float],
    key: str,
    threshold: float,
    patience: int,
) -> int | None:
    policy = StoppingPolicy(
        StoppingConfig(monitor=key, mode="max", min_gain_per_kj=threshold, patience=patience)
    )
    total = 0.0
    for epoch, value in points[:-1]:  # stopping at the last epoch saves nothing
        total += energy[epoch]
        if policy.observe(energy[epoch], total, value, None).stop:
            return epoch
    return None


def checkpointing(run: RunRecord, t: Thresholds) -> Finding:
    """P2: a long run that never saved loses everything to a crash or a pre-emption."""
    title = "P2 checkpoint long runs"
    saves = run.facts.get("checkpoints")
    if run.duration_s is None:
        return Finding("P2", title, CANNOT_TELL, "the run's duration is unknown (no summary)")
    if saves is None:
        return Finding(
            "P2",
            title,
            CANNOT_TELL,
            "no record of checkpoint saves (EnergyCallback(run_dir=...) records them)",
        )
    evidence = {"duration": human_duration(run.duration_s), "checkpoint saves": str(len(saves))}
    if saves:
        return Finding(
            "P2", title, DOES_NOT_APPLY, f"the run saved {len(saves)} checkpoint(s)", evidence
        )
    if run.duration_s < t.long_run_s:
        return Finding(
            "P2",
            title,
            DOES_NOT_APPLY,
            f"a run of {human_duration(run.duration_s)} (< {human_duration(t.long_run_s)}) "
            "risks little without checkpoints",
            evidence,
        )
    half = None if run.total_j is None else run.total_j / 2
    return Finding(
        "P2",
        title,
        APPLIES,
        f"{human_duration(run.duration_s)} of training and no checkpoint: a crash or pre-emption "
        "restarts it from zero",
        evidence,
        None
        if half is None
        else f"a failure at a random moment costs {half:.4g} J on average "
        f"(half the run; an estimate, {_kind(run)})",
        "EnergyCheckpoint(max_overhead=0.01) (saves when the energy at risk outweighs a save)",
    )


def data_pipeline(run: RunRecord, t: Thresholds) -> Finding:
    """P6: steps waiting for data burn idle accelerator energy."""
    title = "P6 read and write data efficiently"
    shares = [v for _, v in run.series(keys.DATA_WAIT_FRACTION)]
    if not shares:
        return Finding(
            "P6",
            title,
            CANNOT_TELL,
            "the run logged no time/data_wait_fraction (EnergyCallback logs it)",
        )
    mean = statistics.fmean(shares)
    evidence = {"time/data_wait_fraction": f"mean {mean:.1%} over {len(shares)} epochs"}
    if mean <= t.data_wait_share:
        return Finding(
            "P6",
            title,
            DOES_NOT_APPLY,
            f"steps waited for data {mean:.1%} of the time (<= {t.data_wait_share:.0%})",
            evidence,
        )
    train = sum(v for _, v in run.series("energy/train_epoch_j"))
    return Finding(
        "P6",
        title,
        APPLIES,
        f"steps waited for data {mean:.1%} of the time (> {t.data_wait_share:.0%}): the input "
        "pipeline, not the model, sets the pace",
        evidence,
        f"up to {mean * train:.4g} J of training energy was spent waiting (an upper bound, "
        f"{_kind(run)})"
        if train
        else None,
        "load in parallel and ahead: DataLoader(num_workers=4, pin_memory=True, "
        "persistent_workers=True), tf.data's .prefetch(tf.data.AUTOTUNE); cache decoded data",
    )


def memory(run: RunRecord, t: Thresholds) -> Finding:
    """P7: memory that grows every epoch ends in an out-of-memory crash and a lost run."""
    title = "P7 avoid memory leaks and out-of-memory crashes"
    events = run.facts.get("oom_events") or []
    used = [v for _, v in run.series(keys.HOST_RSS_MIB)]
    if events:
        return Finding(
            "P7",
            title,
            APPLIES,
            f"the run hit {len(events)} out-of-memory error(s)",
            {"oom_events": str(len(events))},
            None,
            "OOMGuard (pre-flight check, smaller batches instead of a crash)",
        )
    if len(used) < 3:
        return Finding(
            "P7",
            title,
            CANNOT_TELL,
            f"{len(used)} epochs with memory/host_rss_mib; a trend needs 3 or more",
        )
    # a long log read as groups of epochs: each row's growth is that many epochs'
    per_row_mib = t.leak_mib_per_epoch * run.epoch_stride
    watch = LeakWatch(window=min(len(used), 5), min_growth_bytes=per_row_mib * 2**20)
    trend = None
    for value in used:
        trend = watch.observe(value * 2**20)
    assert trend is not None
    evidence = {keys.HOST_RSS_MIB: f"{used[0]:.0f} -> {used[-1]:.0f} MiB over {len(used)} epochs"}
    if not trend.leaking:
        return Finding(
            "P7",
            title,
            DOES_NOT_APPLY,
            f"memory grew {trend.growth_bytes_per_epoch / 2**20 / run.epoch_stride:.1f} MiB per "
            f"epoch (a leak is >= {t.leak_mib_per_epoch:g} every epoch)",
            evidence,
        )
    grouped = f" (over groups of {run.epoch_stride} epochs)" if run.epoch_stride > 1 else ""
    return Finding(
        "P7",
        title,
        APPLIES,
        trend.message + grouped,
        evidence,
        None,
        "OOMGuard(min_leak_mib=...) warns as it grows; keep .item() of logged "
        "losses, not the tensors",
    )


def pretrained(run: RunRecord, t: Thresholds) -> Finding:
    """P1: a standard architecture trained from random weights repeats someone's training."""
    title = "P1 start from a pre-trained network"
    loaded, arch = run.facts.get("loaded_weights"), str(run.facts.get("architecture") or "")
    if not arch:
        return Finding("P1", title, CANNOT_TELL, "the run's architecture was not recorded")
    seen = "unknown" if loaded is None else str(loaded)
    evidence = {"architecture": arch, "loaded_weights": seen}
    if not arch.lower().startswith(STANDARD_ARCHITECTURES):
        return Finding(
            "P1",
            title,
            DOES_NOT_APPLY,
            f"{arch} is not an architecture with public pre-trained weights known here: "
            "training it repeats no one's training",
            evidence,
        )
    if loaded is None:
        return Finding(
            "P1",
            title,
            CANNOT_TELL,
            f"{arch} has public pre-trained weights, and whether this run loaded weights was "
            "not seen (import the adapter before building or loading the model)",
            evidence,
        )
    if loaded:
        return Finding("P1", title, DOES_NOT_APPLY, "the run started from loaded weights", evidence)
    return Finding(
        "P1",
        title,
        APPLIES,
        f"{arch} was trained from random weights; pre-trained weights exist",
        evidence,
        None,
        "fine-tune from pre-trained weights (torchvision "
        "weights=..., from_pretrained) instead of training from scratch",
    )


def _compression(pattern: str, title: str, action: str, distills: bool = False) -> Rule:
    def rule(run: RunRecord, t: Thresholds) -> Finding:
        per_sample, dtypes = run.facts.get("inference_j_per_sample"), run.facts.get("dtypes")
        params = run.facts.get("params")
        if per_sample is None or dtypes is None:
            return Finding(
                pattern,
                title,
                CANNOT_TELL,
                "needs the model's inference J/sample and weight dtypes (a run folder of a "
                "fit with validation records both; so does a compression report)",
            )
        evidence = {"inference": f"{per_sample:.4g} J/sample", "dtypes": ", ".join(dtypes)}
        loop = run.facts.get("inference_loop")
        if loop is not None:  # metered by EnergyCallback: a whole loop, data loading included
            evidence["inference"] += f" (the {loop} loop, at its batch size)"
        wide = any(d in ("float32", "float64") for d in dtypes)
        if not wide or per_sample < t.high_j_per_sample:
            return Finding(
                pattern,
                title,
                DOES_NOT_APPLY,
                f"weights {', '.join(dtypes)}, {per_sample:.4g} J/sample (compression "
                f"pays above {t.high_j_per_sample:g} J with float32/64 weights)",
                evidence,
            )
        least = t.distill_params if distills else t.compress_params
        if params is None:
            return Finding(
                pattern, title, CANNOT_TELL, "the model's parameter count was not recorded",
                evidence,
            )  # fmt: skip
        if params < least:
            why = (
                "too small a teacher to distill"
                if distills
                else "its inference is mostly overhead (loading, the framework), which "
                "compression does not cut"
            )
            return Finding(
                pattern,
                title,
                DOES_NOT_APPLY,
                f"{params} parameters (< {least:,}): {why}",
                evidence,
            )
        return Finding(
            pattern,
            title,
            APPLIES,
            f"{per_sample:.4g} J per inference sample with {', '.join(dtypes)} weights",
            evidence,
            "measured by the compression report itself, before and after",
            action,
        )

    return rule


def tensor_operations(run: RunRecord, t: Thresholds) -> Finding:
    """P8: Python loops where a library's tensor operation would do."""
    title = "P8 use the library's tensor operations"
    share, calls = run.facts.get("python_time_share"), run.facts.get("line_calls_per_sample")
    if share is None:
        return Finding(
            "P8",
            title,
            CANNOT_TELL,
            "needs a profile of a few training steps (EnergyCallback profiles 3 in a run "
            "that writes a summary: summary_path= or run_dir=)",
        )
    line = str(run.facts.get("busiest_line") or "one line")
    evidence = {"python_time_share": f"{share:.0%} of the profiled steps' time"}
    if calls is not None:
        evidence["line_calls_per_sample"] = f"{calls:.3g} calls per sample from {line}"
    action = (
        "do the per-sample work on the whole batch: one tensor operation instead of a loop "
        "(broadcasting, torch.vmap, keras.ops on batched tensors)"
    )
    if calls is not None and calls >= t.line_calls_per_sample:
        return Finding(
            "P8",
            title,
            APPLIES,
            f"{line} makes {calls:.3g} calls per sample in a step: a Python loop over the "
            "batch does per sample what one batched operation does (or a loop over as many "
            "layers as the batch has samples: look at the line)",
            evidence,
            None,
            action,
        )
    if share > t.python_share:
        return Finding(
            "P8",
            title,
            APPLIES,
            f"{share:.0%} of the step ran Python in your code (> {t.python_share:.0%}), "
            "outside the library's native operations",
            evidence,
            None,
            action,
        )
    per_sample = "" if calls is None else f"; at most {calls:.3g} calls per sample from a line"
    return Finding(
        "P8",
        title,
        DOES_NOT_APPLY,
        f"{share:.0%} of the step ran Python in your code (<= {t.python_share:.0%}){per_sample}",
        evidence,
    )


Rule = Callable[[RunRecord, Thresholds], Finding]
RULES: tuple[Rule, ...] = (
    pretrained,
    checkpointing,
    _compression("P3", "P3 prune", "StructuredPruning (Lightning) / MagnitudePruning (Keras)"),
    _compression("P4", "P4 quantize", "PostTrainingQuantization"),
    _compression(
        "P5", "P5 distill", "Distillation (Lightning) / DistillationTrainer (HF)", distills=True
    ),
    data_pipeline,
    memory,
    tensor_operations,
    diminishing_returns,
)
"""Every rule, in the catalogue's order and diminishing returns last."""


def advise(run: RunRecord, thresholds: Thresholds | None = None) -> list[Finding]:
    """Judge every pattern on ``run``.

    Args:
        run: what :func:`~green_callbacks.analysis.run.read_run` returned.
        thresholds: the rules' thresholds (default :class:`Thresholds`).
    """
    return [rule(run, thresholds or Thresholds()) for rule in RULES]


def format_advice(findings: Sequence[Finding]) -> str:
    """The findings as text: those that apply first, each with its evidence and action.

    Args:
        findings: what :func:`advise` returned.
    """
    order = {APPLIES: 0, CANNOT_TELL: 1, DOES_NOT_APPLY: 2}
    lines = []
    for f in sorted(findings, key=lambda f: order[f.verdict]):
        lines.append(f"[{f.verdict}] {f.title}: {f.reason}")
        lines += [f"    {name}: {value}" for name, value in f.evidence.items()]
        if f.saving and f.verdict == APPLIES:
            lines.append(f"    saving: {f.saving}")
        if f.action and f.verdict == APPLIES:
            lines.append(f"    do: {f.action}")
    return "\n".join(lines)
