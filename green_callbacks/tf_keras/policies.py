"""The policy callbacks for tf_keras models: Keras 3's hooks on tf_keras's ``Callback``."""

from __future__ import annotations

import tf_keras

from green_callbacks.keras.checkpoint import CheckpointHooks
from green_callbacks.keras.early_stopping import EarlyStoppingHooks
from green_callbacks.keras.oom_guard import OOMGuardHooks
from green_callbacks.policies.stop_driver import EnergyEarlyStoppingArgs
from green_callbacks.tf_keras._compat import TF_KERAS


class EnergyEarlyStopping(EarlyStoppingHooks, tf_keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = EnergyEarlyStoppingArgs.__doc__
    flavour = TF_KERAS


class EnergyCheckpoint(CheckpointHooks, tf_keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = CheckpointHooks.__doc__
    flavour = TF_KERAS


class OOMGuard(OOMGuardHooks, tf_keras.callbacks.Callback):  # type: ignore[misc]
    __doc__ = OOMGuardHooks.__doc__
    flavour = TF_KERAS
