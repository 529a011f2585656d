"""A batch's energy attributed to modules by their own time: a fake clock, then a real model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from green_callbacks.serving.layers import OUTSIDE, attribute, layer_type  # noqa: E402
from green_callbacks.testing import FakeClock, FakeMeter  # noqa: E402


class Sleeper(torch.nn.Module):
    """A module whose forward takes ``seconds`` on the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def forward(self, x):
        self.clock.advance(self.seconds)
        return x


class Conv2dSleeper(Sleeper):
    pass


class LinearSleeper(Sleeper):
    pass


class Block(torch.nn.Module):
    """A parent that spends its own time around its children's."""

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock = clock
        self.conv = Conv2dSleeper(clock, 0.030)
        self.fc = LinearSleeper(clock, 0.010)

    def forward(self, x):
        x = self.conv(x)
        self.clock.advance(0.005)  # e.g. a flatten between the children
        return self.fc(x)


def test_energy_is_split_in_the_ratio_of_the_modules_own_times() -> None:
    clock = FakeClock()
    meter = FakeMeter({"cpu:0": 100.0}, clock=clock)
    model = Block(clock)
    x = torch.zeros(2)

    def step():
        model(x)
        clock.advance(0.002)  # outside every module (the loop around the model)

    result = attribute(model, step, batches=4, meters=meter, clock=clock)
    assert result.by_module["conv"] == pytest.approx(4 * 0.030 * 100.0)
    assert result.by_module["fc"] == pytest.approx(4 * 0.010 * 100.0)
    assert result.by_module[""] == pytest.approx(4 * 0.005 * 100.0)  # the parent's own time
    assert result.by_module[OUTSIDE] == pytest.approx(4 * 0.002 * 100.0)
    assert result.energy_j == pytest.approx(4 * 0.047 * 100.0)
    assert sum(result.by_module.values()) == pytest.approx(result.energy_j)
    assert result.by_type == pytest.approx(
        {"conv": 12.0, "linear": 4.0, "other": 2.0, OUTSIDE: 0.8}
    )
    assert result.hook_overhead == pytest.approx(0.0, abs=1e-12)  # no time on a fake clock
    assert result.split == "attributed" and result.energy_kind == "measured"
    assert next(iter(result.shares())) == "conv"
    assert result.caution is None  # the hooks cost nothing here


def test_the_hooks_are_removed_afterwards_even_when_the_step_fails() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    calls = []

    def step():
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        model(torch.zeros(1, 4))

    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, step, batches=2, meters="estimate")
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks and not module._backward_pre_hooks


def test_a_real_training_step_is_attributed_forward_and_backward() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 10),
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    result = attribute(model, step, batches=5, backward=True, meters="estimate")
    assert {"0", "0 (backward)", "3", "3 (backward)"} <= set(result.by_module)
    assert result.module_types["0 (backward)"] == "conv"
    assert set(result.by_type) <= {"conv", "activation", "other", "linear", OUTSIDE}
    assert sum(result.by_type.values()) == pytest.approx(result.energy_j, rel=1e-9)
    assert result.energy_kind == "estimated"
    assert result.hook_overhead > -1.0
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks


@pytest.mark.parametrize(
    ("module", "kind"),
    [
        (torch.nn.Conv2d(1, 1, 1), "conv"), (torch.nn.Linear(1, 1), "linear"),
        (torch.nn.MultiheadAttention(4, 1), "attention"),
        (torch.nn.BatchNorm2d(1), "normalisation"),
        (torch.nn.GELU(), "activation"), (torch.nn.AdaptiveAvgPool2d(1), "pooling"),
        (torch.nn.Embedding(2, 2), "embedding"), (torch.nn.Flatten(), "other"),
    ],
)  # fmt: skip
def test_layer_types(module, kind: str) -> None:
    assert layer_type(module) == kind


def test_bad_arguments_are_named() -> None:
    from green_callbacks.serving import ServingConfigError

    with pytest.raises(ServingConfigError, match="batches must be >= 1"):
        attribute(torch.nn.Linear(1, 1), lambda: None, batches=0)
    with pytest.raises(ServingConfigError, match="needs a torch module, got function"):
        attribute(lambda x: x, lambda: None)


def test_hooks_that_cost_a_large_share_of_the_time_come_with_a_caution() -> None:
    from dataclasses import replace

    from green_callbacks.serving.layers import Attribution

    base = Attribution({}, {}, {}, {}, 1.0, 1, 0.1, "measured", "cpu:0=fake")
    assert base.caution is None
    assert "added 82% time" in (replace(base, hook_overhead=0.82).caution or "")
