"""Every framework's EnergyCallback takes the same arguments: one shared constructor."""

from __future__ import annotations

import importlib

import pytest

from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.session import CallbackConfig


@pytest.mark.parametrize("adapter", ["lightning", "keras", "hf"])
def test_adapter_uses_the_shared_constructor(adapter: str) -> None:
    module = importlib.import_module(f"green_callbacks.{adapter}")

    callback = module.EnergyCallback(granularity="epoch", pue=1.2, carbon_intensity_g_per_kwh=400.0)

    assert type(callback).__init__ is EnergyCallbackArgs.__init__
    assert callback.config == CallbackConfig(
        granularity="epoch", pue=1.2, carbon_intensity_g_per_kwh=400.0
    )
