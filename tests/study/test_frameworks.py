"""The twin workloads: the same models in Lightning and Keras, metered only where they say."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
keras = pytest.importorskip("keras", reason="needs the 'keras' extra")
pytest.importorskip("sklearn", reason="needs the 'study' extra")

from green_callbacks.study import frameworks  # noqa: E402
from green_callbacks.study.definition import preset  # noqa: E402

WORKLOADS = {"recommender": frameworks.recommender, "digits_cnn": frameworks.digits_cnn,
             "char_lm": frameworks.char_lm}  # fmt: skip


class Meter:
    """Counts the measured sections (the worker's measure(), without a tracker)."""

    def __init__(self) -> None:
        self.entered = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self.entered += 1
        yield


@pytest.mark.parametrize("framework", ["lightning", f"keras-{keras.backend.backend()}"])
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_each_workload_meters_one_section_and_reports_accuracy(
    workload: str, framework: str
) -> None:
    meter = Meter()
    result = WORKLOADS[workload](phase="train", framework=framework, measure=meter, epochs=1)

    assert meter.entered == 1
    assert set(result) == {"accuracy"} and 0.0 <= result["accuracy"] <= 1.0


def test_the_cnn_learns_digits_in_both_frameworks_alike() -> None:
    accuracies = [
        frameworks.digits_cnn(phase="inference", framework=framework, measure=Meter())["accuracy"]
        for framework in ("lightning", f"keras-{keras.backend.backend()}")
    ]
    assert min(accuracies) > 0.5  # one epoch of the same network: well above 0.1 chance


def test_the_same_data_for_every_framework() -> None:
    first, second = frameworks.interactions(), frameworks.interactions()
    assert all((a == b).all() for a, b in zip(first, second))
    assert "Beautiful is better than ugly." in frameworks.corpus()
    x, y, _, _, vocabulary = frameworks.sequences()
    assert x.shape[1] == 32 and int(y.max()) < vocabulary


def test_bad_framework_and_phase_are_refused() -> None:
    with pytest.raises(ValueError, match="framework must be one of"):
        frameworks.digits_cnn(phase="train", framework="jax")
    with pytest.raises(ValueError, match="phase must be 'train' or 'inference'"):
        frameworks.digits_cnn(phase="eval", framework="lightning")


def test_the_frameworks_preset() -> None:
    quick, full = preset("frameworks", quick=True), preset("frameworks")
    assert quick.factors == {"framework": ["lightning", "keras-tensorflow", "keras-torch"]}
    assert [w.name for w in quick.workloads] == ["recommender", "digits_cnn", "char_lm"]
    assert (quick.repetitions, quick.warmup, full.repetitions, full.warmup) == (3, 0, 10, 1)
    assert quick.workloads[0].args == {"epochs": 1} and full.workloads[0].args == {}
