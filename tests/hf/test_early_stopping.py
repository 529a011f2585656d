"""EnergyEarlyStopping in a real transformers.Trainer, on a tiny model built in code.

Energy is made deterministic with a FakeMeter (100 W) on a FakeClock that a
callback advances by 1 s per optimizer step: 4 steps per epoch, 400 J per
evaluation period (evaluation every epoch takes no fake time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="needs the 'hf' extra")
transformers = pytest.importorskip("transformers", reason="needs the 'hf' extra")

from green_callbacks.core import keys  # noqa: E402
from green_callbacks.errors import EnergyCallbackMissingError  # noqa: E402
from green_callbacks.hf import EnergyCallback, EnergyEarlyStopping  # noqa: E402
from green_callbacks.policies import StopReason  # noqa: E402
from green_callbacks.testing import FakeClock, fake_metered  # noqa: E402
from tests.hf.test_callback import make_trainer  # noqa: E402


class Ticks(transformers.TrainerCallback):
    """1 s of fake time per optimizer step."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.clock.advance(1.0)


class Scripted(transformers.TrainerCallback):
    """Puts a scripted ``eval_acc`` into each evaluation's metrics, before the policy reads them."""

    def __init__(self, accuracies: list[float]) -> None:
        self.accuracies, self.calls = accuracies, 0

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
    ) -> None:
        metrics["eval_acc"] = self.accuracies[min(self.calls, len(self.accuracies) - 1)]
        self.calls += 1


def train(tmp_path: Path, stopper: EnergyEarlyStopping, accuracies: list[float]) -> Any:
    energy, clock = fake_metered(EnergyCallback)
    trainer = make_trainer(tmp_path, 10, [Ticks(clock), energy, Scripted(accuracies), stopper])
    trainer.train()
    return trainer


def test_budget_stops_before_a_period_that_would_overrun(tmp_path: Path) -> None:
    stopper = EnergyEarlyStopping(monitor="eval_acc", mode="max", budget_j=1000.0)
    trainer = train(tmp_path, stopper, [0.5])

    # 400 J per epoch: after 800 J a third epoch would reach 1200 J > 1000 J
    assert trainer.state.global_step == 8
    assert stopper.decision is not None and stopper.decision.reason is StopReason.BUDGET
    saved = [e[keys.STOP_SAVED_ESTIMATE_J] for e in trainer.state.log_history
             if keys.STOP_SAVED_ESTIMATE_J in e]  # fmt: skip
    assert saved == [pytest.approx(8 * 400.0)]  # 8 planned epochs not run: an estimate


def test_diminishing_returns_and_target(tmp_path: Path) -> None:
    slow = EnergyEarlyStopping(monitor="eval_acc", mode="max", min_gain_per_kj=0.05, patience=2)
    trainer = train(tmp_path / "a", slow, [0.5, 0.8, 0.85, 0.79, 0.80, 0.81])
    assert slow.decision is not None and slow.decision.reason is StopReason.DIMINISHING_RETURNS
    assert trainer.state.global_step == 5 * 4

    enough = EnergyEarlyStopping(monitor="eval_acc", mode="max", target=0.9)
    trainer = train(tmp_path / "b", enough, [0.5, 0.7, 0.92])
    assert enough.decision is not None and enough.decision.reason is StopReason.TARGET_REACHED
    assert trainer.state.global_step == 3 * 4


def test_without_energy_callback_it_says_what_to_add(tmp_path: Path) -> None:
    stopper = EnergyEarlyStopping(monitor="eval_acc", mode="max", target=0.9)
    trainer = make_trainer(tmp_path, 1, [Scripted([0.5]), stopper])
    with pytest.raises(EnergyCallbackMissingError, match=r"EnergyCallback\(\), EnergyEarly"):
        trainer.train()


def test_resume_continues_the_policy_and_its_first_period_is_its_own(tmp_path: Path) -> None:
    def run(epochs: int, resume: str | None = None) -> tuple[Any, EnergyEarlyStopping]:
        energy, clock = fake_metered(EnergyCallback)
        stopper = EnergyEarlyStopping(monitor="eval_acc", mode="max", target=2.0)  # never met
        trainer = make_trainer(
            tmp_path, epochs, [Ticks(clock), energy, Scripted([0.5]), stopper],
            save_strategy="epoch",
        )  # fmt: skip
        trainer.train(resume_from_checkpoint=resume)
        return trainer, stopper

    run(2)
    second, stopper = run(4, resume=str(tmp_path / "out" / "checkpoint-8"))

    # 4 periods of 400 J: two before the resume, two after; none counts the restored 800 J
    assert stopper.policy.epochs == 4
    assert stopper.policy.state_dict()["costs_j"] == [400.0, 400.0, 400.0]
    assert [e[keys.TOTAL_J] for e in second.state.log_history if keys.TOTAL_J in e][-1] == 1600.0


def test_restore_best_weights_loads_the_best_evaluation(tmp_path: Path) -> None:
    snapshots: list[dict[str, Any]] = []

    class Snapshot(transformers.TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            snapshots.append({k: v.clone() for k, v in kwargs["model"].state_dict().items()})

    stopper = EnergyEarlyStopping(
        monitor="eval_acc", mode="max", min_gain_per_kj=0.05, patience=2,
        restore_best_weights=True,
    )  # fmt: skip
    energy, clock = fake_metered(EnergyCallback)
    callbacks = [Ticks(clock), energy, Scripted([0.5, 0.8, 0.85, 0.79, 0.80]), Snapshot(), stopper]
    trainer = make_trainer(tmp_path, 10, callbacks, learning_rate=0.5)
    trainer.train()

    assert stopper.decision is not None and len(snapshots) == 5
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, snapshots[2][key])  # the 0.85 evaluation
    assert not torch.equal(snapshots[2]["layer.weight"], snapshots[4]["layer.weight"])
