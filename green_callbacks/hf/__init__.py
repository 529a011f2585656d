"""Hugging Face ``transformers.Trainer`` adapter.

Needs ``pip install 'green-callbacks[hf]'``.
"""

from green_callbacks.hf.callback import STATE_FILE, EnergyCallback, attach
from green_callbacks.hf.distillation import DistillationTrainer
from green_callbacks.hf.early_stopping import EnergyEarlyStopping

__all__ = [
    "STATE_FILE", "DistillationTrainer", "EnergyCallback", "EnergyEarlyStopping", "attach",
]  # fmt: skip
