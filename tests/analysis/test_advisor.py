"""Each advisor rule on constructed runs: where it applies, does not apply, cannot tell."""

from __future__ import annotations

import pytest

from green_callbacks.analysis import RunRecord, Thresholds, advise, format_advice
from green_callbacks.analysis import advisor as rules

T = Thresholds()


def run_with(accuracies=(), energy=1000.0, **options) -> RunRecord:
    epochs = [{"epoch": e, "val_acc": a, "energy/train_epoch_j": energy}
              for e, a in enumerate(accuracies)]  # fmt: skip
    return RunRecord("constructed", energy_kind="measured", epochs=epochs, **options)


FLAT = (0.50, 0.70, 0.80, 0.85, 0.851, 0.852, 0.852, 0.853)
RISING = (0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80)


def test_diminishing_returns_applies_where_accuracy_flattened() -> None:
    finding = rules.diminishing_returns(run_with(FLAT), T)
    assert finding.verdict == "applies"
    # Early gain: 0.35 over epochs 1-3 (3 kJ) = 0.1167/kJ; a tenth of it, to 2 digits: 0.012.
    assert "min_gain_per_kj=0.012, patience=3" in (finding.action or "")
    assert "after epoch 6" in finding.reason  # the window 3-6 gained 0.002 for 3 kJ
    assert finding.saving.startswith("about 1000 J (12% of the epochs' energy; an estimate")


def test_diminishing_returns_does_not_apply_while_accuracy_still_climbs() -> None:
    assert rules.diminishing_returns(run_with(RISING), T).verdict == "does not apply"


def test_a_fixed_threshold_replaces_the_relative_one() -> None:
    finding = rules.diminishing_returns(run_with(RISING), Thresholds(min_gain_per_kj=0.2))
    assert finding.verdict == "applies" and "min_gain_per_kj=0.2," in (finding.action or "")


@pytest.mark.parametrize(
    ("run", "why"),
    [
        (run_with(FLAT[:5]), "5 epochs with val_acc and energy; the check needs 7"),
        (RunRecord("x", epochs=[{"epoch": 0, "loss": 1.0, "energy/train_epoch_j": 1.0}]),
         "no quality metric per epoch (looked for val_acc"),
        (RunRecord("x", epochs=[{"epoch": 0, "val_acc": 0.5}]), "no energy per epoch"),
    ],
)  # fmt: skip
def test_diminishing_returns_cannot_tell_without_its_figures(run: RunRecord, why: str) -> None:
    finding = rules.diminishing_returns(run, T)
    assert finding.verdict == "cannot tell" and why in finding.reason


def test_checkpointing() -> None:
    long = dict(duration_s=3 * 3600.0, total_j=9e6)
    applies = rules.checkpointing(run_with(**long, facts={"checkpoints": []}), T)
    assert applies.verdict == "applies" and "EnergyCheckpoint" in (applies.action or "")
    assert applies.saving.startswith("a failure at a random moment costs 4.5e+06 J on average")
    saved = rules.checkpointing(run_with(**long, facts={"checkpoints": [{"epoch": 1}]}), T)
    assert saved.verdict == "does not apply"
    short = rules.checkpointing(run_with(duration_s=600.0, facts={"checkpoints": []}), T)
    assert short.verdict == "does not apply" and "a run of 10 min (< 1 h)" in short.reason
    assert rules.checkpointing(run_with(**long), T).verdict == "cannot tell"
    assert rules.checkpointing(run_with(facts={"checkpoints": []}), T).verdict == "cannot tell"


def with_series(key: str, values) -> RunRecord:
    epochs = [{"epoch": e, key: v, "energy/train_epoch_j": 100.0} for e, v in enumerate(values)]
    return RunRecord("x", energy_kind="estimated", epochs=epochs)


def test_data_pipeline() -> None:
    slow = rules.data_pipeline(with_series("time/data_wait_fraction", [0.5, 0.6]), T)
    assert slow.verdict == "applies" and "55.0%" in slow.reason
    assert (
        slow.saving
        == "up to 110 J of training energy was spent waiting (an upper bound, estimated)"
    )
    assert "num_workers" in (slow.action or "")
    fast = rules.data_pipeline(with_series("time/data_wait_fraction", [0.05, 0.02]), T)
    assert fast.verdict == "does not apply"
    assert rules.data_pipeline(run_with(FLAT), T).verdict == "cannot tell"


def test_memory() -> None:
    leak = rules.memory(with_series("memory/host_rss_mib", [500, 600, 700, 800, 900]), T)
    assert leak.verdict == "applies" and "100.0 MiB per epoch" in leak.reason
    assert "OOMGuard" in (leak.action or "")
    flat = rules.memory(with_series("memory/host_rss_mib", [500, 505, 503, 506]), T)
    assert flat.verdict == "does not apply"
    assert rules.memory(with_series("memory/host_rss_mib", [500, 900]), T).verdict == "cannot tell"
    crashed = rules.memory(RunRecord("x", facts={"oom_events": [{"epoch": 2}]}), T)
    assert crashed.verdict == "applies" and "1 out-of-memory" in crashed.reason


@pytest.mark.parametrize(
    ("architecture", "loaded", "verdict"),
    [
        ("ResNet50", False, "applies"),
        ("resnet50", True, "does not apply"),
        ("bert", None, "cannot tell"),  # a load may have gone unseen
        ("DigitsCNN", False, "does not apply"),  # no public weights to start from
        ("DigitsCNN", None, "does not apply"),  # ... whatever was loaded
        (None, False, "cannot tell"),
    ],
)
def test_pretrained(architecture: str | None, loaded: bool | None, verdict: str) -> None:
    facts = {"loaded_weights": loaded, "architecture": architecture}
    finding = rules.pretrained(RunRecord("x", facts=facts), T)
    assert finding.verdict == verdict
    assert ("fine-tune" in (finding.action or "")) == (verdict == "applies")


@pytest.mark.parametrize("pattern", ["P3", "P4", "P5"])
def test_compression(pattern: str) -> None:
    rule = {r(RunRecord("x"), T).pattern: r for r in rules.RULES}[pattern]
    big = RunRecord("x", facts={"inference_j_per_sample": 0.5, "dtypes": ["float32"],
                                "params": 25_000_000})  # fmt: skip
    assert rule(big, T).verdict == "applies"
    quantized = RunRecord("x", facts={"inference_j_per_sample": 0.5, "dtypes": ["int8"],
                                      "params": 25_000_000})  # fmt: skip
    assert rule(quantized, T).verdict == "does not apply"
    cheap = RunRecord("x", facts={"inference_j_per_sample": 0.001, "dtypes": ["float32"],
                                  "params": 25_000_000})  # fmt: skip
    assert rule(cheap, T).verdict == "does not apply"
    assert rule(RunRecord("x"), T).verdict == "cannot tell"
    unsized = RunRecord("x", facts={"inference_j_per_sample": 0.5, "dtypes": ["float32"]})
    assert rule(unsized, T).verdict == "cannot tell"


@pytest.mark.parametrize(("params", "applies"), [(20_000, ""), (200_000, "P3 P4"),
                                                 (2_000_000, "P3 P4 P5")])  # fmt: skip
def test_compression_needs_a_model_large_enough(params: int, applies: str) -> None:
    """Below 100,000 parameters inference is mostly overhead; distilling needs a million."""
    run = RunRecord("x", facts={"inference_j_per_sample": 0.5, "dtypes": ["float32"],
                                "params": params})  # fmt: skip
    found = {f.pattern: f for f in advise(run) if f.pattern in ("P3", "P4", "P5")}
    assert " ".join(p for p, f in found.items() if f.verdict == "applies") == applies
    if params == 20_000:
        assert "20000 parameters (< 100,000)" in found["P3"].reason
        assert "too small a teacher" in found["P5"].reason


@pytest.mark.parametrize(
    ("share", "calls", "verdict", "said"),
    [
        (0.6, None, "applies", "60% of the step ran Python"),
        (0.2, 8.0, "applies", "net.py:12 makes 8 calls per sample"),  # native work, a loop
        (0.2, 0.1, "does not apply", "at most 0.1 calls per sample"),
        (0.5, 0.99, "does not apply", "(<= 50%)"),  # both at their thresholds: not over
    ],
)
def test_tensor_operations(share: float, calls: float | None, verdict: str, said: str) -> None:
    facts: dict[str, object] = {"python_time_share": share}
    if calls is not None:
        facts.update(line_calls_per_sample=calls, busiest_line="net.py:12")
    finding = rules.tensor_operations(RunRecord("x", facts=facts), T)
    assert finding.verdict == verdict and said in finding.reason
    assert (finding.action is not None) == (verdict == "applies")


def test_tensor_operations_cannot_tell_without_a_profile() -> None:
    finding = rules.tensor_operations(RunRecord("x", facts={"line_calls_per_sample": 3.0}), T)
    assert finding.verdict == "cannot tell" and "summary_path=" in finding.reason


def test_advise_judges_every_pattern_and_lists_what_applies_first() -> None:
    findings = advise(run_with(FLAT, duration_s=7200.0, facts={"checkpoints": []}))
    assert [f.pattern for f in findings] == ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8",
                                             "returns"]  # fmt: skip
    text = format_advice(findings)
    assert text.splitlines()[0].startswith("[applies] P2 checkpoint long runs")
    assert "do: EnergyEarlyStopping(" in text
    assert text.index("[applies]") < text.index("[cannot tell]")
