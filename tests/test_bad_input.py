"""Bad arguments fail when an object is built, with the value, the range and the fix."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from green_callbacks.core.session import CallbackConfig
from green_callbacks.errors import ConfigError, GreenCallbacksError, MeterSpecError
from green_callbacks.policies import (
    CheckpointPlanConfig,
    OOMDriver,
    OOMPlanConfig,
    SaveSchedule,
    StoppingConfig,
)

CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("meters=None", lambda: CallbackConfig(meters=None), MeterSpecError,  # type: ignore[arg-type]
     r"takes 'auto', a spec string .* got None"),
    ("meters='nope'", lambda: CallbackConfig(meters="nope"), MeterSpecError, "nope"),
    ("pue without carbon", lambda: CallbackConfig(pue=1.4), ConfigError,
     r"pue=1\.4 scales carbon figures only.*carbon_intensity_g_per_kwh="),
    ("pue below 1", lambda: CallbackConfig(pue=0.5, carbon_intensity_g_per_kwh=300.0),
     ConfigError, r"pue must be >= 1\.0"),
    ("idle baseline", lambda: CallbackConfig(idle_baseline_s=-1.0), ConfigError,
     "idle_baseline_s must be >= 0 s, got -1.0"),
    ("budget as text", lambda: StoppingConfig(budget_j="100"), ConfigError,  # type: ignore[arg-type]
     r"budget_j must be a finite number, got '100' \(str\)"),
    ("fractional patience", lambda: StoppingConfig(budget_j=1.0, patience=2.5),  # type: ignore[arg-type]
     ConfigError, r"patience must be a whole number, got 2\.5"),
    ("target nan", lambda: StoppingConfig(target=float("nan")), ConfigError,
     "target must be a finite number, got nan"),
    ("empty monitor", lambda: StoppingConfig(monitor="", target=0.9), ConfigError,
     "monitor must be the name of a logged metric"),
    ("every_kj as text", lambda: CheckpointPlanConfig(every_kj="5"), ConfigError,  # type: ignore[arg-type]
     "every_kj must be a finite number"),
    ("batch floor fraction", lambda: OOMPlanConfig(min_batch_size=0.5), ConfigError,  # type: ignore[arg-type]
     "min_batch_size must be a whole number"),
    ("negative leak", lambda: OOMDriver(OOMPlanConfig(), min_leak_mib=-1), ConfigError,
     "min_leak_mib must be >= 0 MiB"),
    ("SIGKILL", lambda: SaveSchedule(CheckpointPlanConfig(), signals=("SIGKILL",)), ConfigError,
     "SIGKILL cannot be caught"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "error", "match"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_arguments_fail_when_built(
    build: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as raised:
        build()
    assert isinstance(raised.value, GreenCallbacksError) and isinstance(raised.value, ValueError)


def test_numpy_numbers_are_numbers() -> None:
    np = pytest.importorskip("numpy")
    config = StoppingConfig(budget_j=np.float64(100.0), patience=np.int64(2))
    assert config.patience == 2


@pytest.mark.parametrize("adapter", ["lightning", "keras", "hf"])
def test_energy_callback_arguments_are_checked_when_built(adapter: str) -> None:
    module = pytest.importorskip(f"green_callbacks.{adapter}")
    with pytest.raises(MeterSpecError, match="got None"):
        module.EnergyCallback(meters=None)
