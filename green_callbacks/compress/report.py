"""The compression report: what a compressed model costs and scores next to its original.

Framework-free: figures in, a verdict out. The figures come from
:mod:`green_callbacks.compress.measure` (inference energy) and the
framework modules (parameters, MACs, size, accuracy).

Example:
    >>> before = ModelFigures(params=1000, macs=5e4, size_bytes=4000, accuracy=0.95,
    ...                       j_per_sample=2e-3, s_per_sample=1e-4, batch_size=64,
    ...                       energy_kind="estimated", energy_source="cpu:0=estimate")
    >>> after = ModelFigures(params=500, macs=2.5e4, size_bytes=2000, accuracy=0.94,
    ...                      j_per_sample=1.2e-3, s_per_sample=7e-5, batch_size=64,
    ...                      energy_kind="estimated", energy_source="cpu:0=estimate")
    >>> report = judge("pruning", before, after, max_accuracy_drop=0.02)
    >>> report.accepted, round(report.ratios()["j_per_sample"], 2)
    (True, 0.6)
    >>> for part in report.verdict.split("; "):
    ...     print(part)
    kept: accuracy 0.9500 -> 0.9400 (drop 0.0100, allowed 0.02)
    inference energy 0.6x per sample (estimated)
    >>> print(report.summary())  # doctest: +NORMALIZE_WHITESPACE
    pruning: kept: accuracy 0.9500 -> 0.9400 (drop 0.0100, allowed 0.02); inference energy 0.6x
      per sample (estimated)
      params 1000 -> 500, MACs 5e+04 -> 2.5e+04, size 4000 -> 2000 bytes
      inference 2 -> 1.2 mJ/sample, 100 -> 70 us/sample at batch size 64
      (estimated: cpu:0=estimate)

With what compressing took (the functions that compress meter it themselves),
the report says after how many inferences the saving has paid it back:
    >>> spent = CompressionCost(energy_j=40.0, duration_s=2.0, energy_kind="estimated",
    ...                         energy_source="cpu:0=estimate")
    >>> paid = judge("pruning", before, after, cost=spent)
    >>> round(paid.payback_samples())  # 40 J / (2 - 1.2 mJ saved a sample)
    50000
    >>> print(paid.summary().splitlines()[-1])
      compressing took 40 J in 2 s (estimated); paid back after 5e+04 inferences
"""

from __future__ import annotations

import gzip
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from green_callbacks.core.atomic import write_json_atomic
from green_callbacks.errors import CompressConfigError


@dataclass(frozen=True)
class ModelFigures:
    """One model, measured on this device.

    Attributes:
        params: parameters (quantized weights count as one each).
        macs: multiply-accumulates of one sample's forward pass, if countable.
        size_bytes: size of the saved weights on disk. Units: bytes.
        gzip_bytes: the same file gzip-compressed: where zeroed (unstructured
            pruned) weights pay off. Units: bytes.
        accuracy: on the held-out set, if one was given.
        j_per_sample: inference energy per sample at ``batch_size``. Units: J.
        s_per_sample: inference time per sample at ``batch_size``. Units: s.
        batch_size: the inference batch size both were measured at.
        energy_kind: ``measured``, ``estimated``, ``replayed`` or ``mixed``.
        energy_source: which meters, as ``domain=label`` pairs.
    """

    params: int
    macs: float | None
    size_bytes: int
    accuracy: float | None
    j_per_sample: float
    s_per_sample: float
    batch_size: int
    energy_kind: str
    energy_source: str
    gzip_bytes: int | None = None


def stored_size(data: bytes) -> tuple[int, int]:
    """Bytes of a saved model, raw and gzip-compressed (level 6). Units: bytes."""
    return len(data), len(gzip.compress(data, compresslevel=6))


@dataclass(frozen=True)
class CompressionCost:
    """What compressing a model took, metered around it: pruning and fine-tuning,
    quantizing (and its calibration or quantization-aware training), or distilling.

    Attributes:
        energy_j: Units: J.
        duration_s: Units: s.
        energy_kind: ``measured``, ``estimated``, ``replayed`` or ``mixed``.
        energy_source: the meters, as ``domain=label`` pairs.
    """

    energy_j: float
    duration_s: float
    energy_kind: str
    energy_source: str


RATIO_KEYS = ("params", "macs", "size_bytes", "gzip_bytes", "j_per_sample", "s_per_sample")


@dataclass(frozen=True)
class CompressionReport:
    """A compressed model against its original, with the verdict.

    Attributes:
        technique: ``pruning``, ``quantization`` or ``distillation`` (and its method).
        original, compressed: the figures of each.
        max_accuracy_drop: the drop allowed (absolute), or None for no limit.
        accepted: whether the compressed model is kept.
        verdict: one line saying what was decided and why.
        warnings: sentences for costs that rose instead of falling.
        cost: what compressing took, or None where it was not metered (a student
            trained elsewhere, :func:`judge` called with figures alone).
    """

    technique: str
    original: ModelFigures
    compressed: ModelFigures
    max_accuracy_drop: float | None
    accepted: bool
    verdict: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    cost: CompressionCost | None = None

    def ratios(self) -> dict[str, float]:
        """Compressed over original for each cost (0.5: halved); missing figures left out."""
        ratios = {}
        for key in RATIO_KEYS:
            before, after = getattr(self.original, key), getattr(self.compressed, key)
            if before and after is not None:
                ratios[key] = after / before
        return ratios

    def accuracy_drop(self) -> float | None:
        """Original accuracy minus compressed accuracy (positive: worse), if both are known."""
        if self.original.accuracy is None or self.compressed.accuracy is None:
            return None
        return self.original.accuracy - self.compressed.accuracy

    def payback_samples(self) -> float | None:
        """Inferences (samples) after which the compressed model's saving per sample has
        paid back the energy compressing took; None when compressing was not metered or
        the compressed model saves nothing per sample here (it never pays back)."""
        saving = self.original.j_per_sample - self.compressed.j_per_sample
        if self.cost is None or saving <= 0:
            return None
        return self.cost.energy_j / saving

    def metrics(self, prefix: str = "compress") -> dict[str, float]:
        """Flat figures for a logger: ``compress/j_per_sample_ratio``, ``compress/accepted``..."""
        out = {f"{prefix}/{key}_ratio": value for key, value in self.ratios().items()}
        for name, figures in (("original", self.original), ("compressed", self.compressed)):
            out[f"{prefix}/{name}_j_per_sample"] = figures.j_per_sample
            out[f"{prefix}/{name}_params"] = float(figures.params)
            if figures.accuracy is not None:
                out[f"{prefix}/{name}_accuracy"] = figures.accuracy
        out[f"{prefix}/accepted"] = float(self.accepted)
        if self.cost is not None:
            out[f"{prefix}/compressing_j"] = self.cost.energy_j
        payback = self.payback_samples()
        if payback is not None:
            out[f"{prefix}/payback_samples"] = payback
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self), "warnings": list(self.warnings), "ratios": self.ratios(),
            "accuracy_drop": self.accuracy_drop(), "payback_samples": self.payback_samples(),
        }  # fmt: skip

    def summary(self) -> str:
        """A few lines for a person: the verdict, the figures before -> after, the warnings."""
        a, b = self.original, self.compressed
        counts = f"  params {a.params} -> {b.params}"
        if a.macs is not None and b.macs is not None:
            counts += f", MACs {a.macs:.3g} -> {b.macs:.3g}"
        counts += f", size {a.size_bytes} -> {b.size_bytes} bytes"
        if a.gzip_bytes is not None and b.gzip_bytes is not None:
            counts += f" (gzip {a.gzip_bytes} -> {b.gzip_bytes})"
        inference = (
            f"  inference {a.j_per_sample * 1e3:.3g} -> {b.j_per_sample * 1e3:.3g} mJ/sample, "
            f"{a.s_per_sample * 1e6:.3g} -> {b.s_per_sample * 1e6:.3g} us/sample at batch size "
            f"{b.batch_size} ({b.energy_kind}: {b.energy_source})"
        )
        lines = [f"{self.technique}: {self.verdict}", counts, inference]
        if self.cost is not None:
            c, payback = self.cost, self.payback_samples()
            lines.append(
                f"  compressing took {c.energy_j:.3g} J in {c.duration_s:.3g} s ({c.energy_kind}); "
                + (
                    f"paid back after {payback:.3g} inferences"
                    if payback is not None
                    else "no inference saving per sample here, so it is never paid back"
                )
            )
        return "\n".join([*lines, *(f"  warning: {w}" for w in self.warnings)])

    def write_json(self, path: str | Path) -> Path:
        """Write the report as JSON (atomically); returns the path."""
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path


def judge(
    technique: str,
    original: ModelFigures,
    compressed: ModelFigures,
    max_accuracy_drop: float | None = None,
    *,
    cost: CompressionCost | None = None,
) -> CompressionReport:
    """Compare ``compressed`` with ``original``: keep it only within ``max_accuracy_drop``.

    Args:
        technique: what was done (``"pruning"``, ``"quantization"``...), for the report.
        original: the original model's measured figures.
        compressed: the compressed model's measured figures.
        max_accuracy_drop: the most accuracy the compressed model may lose, as a
            fraction (0.01: one point); None accepts any. Units: fraction.
        cost: what compressing took (:meth:`Measurement.metering
            <green_callbacks.compress.measure.Measurement.metering>`), for the payback.

    The verdict never assumes a saving: a compressed model that costs more
    energy or time per sample than the original on this device gets a warning
    (it is still kept if its accuracy is within bounds: size may be the goal).
    """
    drop = None
    if original.accuracy is not None and compressed.accuracy is not None:
        drop = original.accuracy - compressed.accuracy
    accepted = max_accuracy_drop is None or (drop is not None and drop <= max_accuracy_drop + 1e-12)
    warnings = []
    for key, what in (("j_per_sample", "energy"), ("s_per_sample", "time")):
        before, after = getattr(original, key), getattr(compressed, key)
        if before > 0 and after > before:
            warnings.append(
                f"the {technique} model costs more inference {what} per sample than the "
                f"original on this device ({after / before:.2f}x at batch size "
                f"{compressed.batch_size}): its saving did not materialise here"
            )
    if compressed.size_bytes > original.size_bytes > 0:
        warnings.append(
            f"the {technique} model is larger on disk than the original "
            f"({compressed.size_bytes / original.size_bytes:.2f}x)"
        )
    energy = (
        f"inference energy {compressed.j_per_sample / original.j_per_sample:.2g}x per sample "
        f"({compressed.energy_kind})"
        if original.j_per_sample > 0 else "inference energy not measured"
    )  # fmt: skip
    if drop is None:
        accuracy = "accuracy not measured"
    else:
        allowed = "no limit" if max_accuracy_drop is None else f"allowed {max_accuracy_drop:.4g}"
        accuracy = (
            f"accuracy {original.accuracy:.4f} -> {compressed.accuracy:.4f} "
            f"(drop {drop:.4f}, {allowed})"
        )
    if accepted:
        verdict = f"kept: {accuracy}; {energy}"
    elif drop is None:
        verdict = (
            f"rejected: max_accuracy_drop={max_accuracy_drop} needs a held-out set to check "
            f"against; pass one; {energy}"
        )
    else:
        verdict = (
            f"rejected, the original is kept: {accuracy} loses more than max_accuracy_drop; "
            f"fine-tune longer, compress less, or allow a larger drop; {energy}"
        )
    return CompressionReport(
        technique,
        original,
        compressed,
        max_accuracy_drop,
        accepted,
        verdict,
        tuple(warnings),
        cost,
    )


@dataclass(frozen=True)
class Compressed:
    """The model to go on with (the compressed one if accepted, else the original) and why.

    Attributes:
        model: the compressed model if the report accepted it, else the original.
        report: the measured comparison and its verdict.
    """

    model: Any
    report: CompressionReport


def check_distillation(temperature: float, alpha: float) -> None:
    """Distillation settings every framework shares: ``temperature`` > 0, ``alpha`` in [0, 1]."""
    if temperature <= 0 or not 0 <= alpha <= 1:
        raise CompressConfigError(
            f"need temperature > 0 and 0 <= alpha <= 1, got temperature={temperature}, "
            f"alpha={alpha}"
        )
