"""Errors and warnings raised by green_callbacks.

One base class, :class:`GreenCallbacksError`; each subclass also derives from the
matching built-in (``ValueError``, ``PermissionError``, ``RuntimeError``,
``ImportError``) so callers can catch either.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class GreenCallbacksError(Exception):
    """Base class of every error raised by green_callbacks."""


class MeterSpecError(GreenCallbacksError, ValueError):
    """A meter spec string (``"rapl:/path"``, ``"estimate:tdp_w=65"``...) is malformed."""


class MeterUnavailableError(GreenCallbacksError, RuntimeError):
    """A meter the user asked for cannot work on this machine."""


class MeterPermissionError(MeterUnavailableError, PermissionError):
    """A sensor exists but this process may not read it."""


class MeterReadError(GreenCallbacksError, RuntimeError):
    """A meter that worked before failed while reading."""


class ImplausibleReadingError(MeterReadError):
    """One reading is impossible (a counter outside its range): skip it, keep the meter."""


class TrackerStateError(GreenCallbacksError, RuntimeError):
    """The tracker was used out of order (closing a window twice, reading before start)."""


class MissingExtraError(GreenCallbacksError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class EnergyCallbackMissingError(GreenCallbacksError, RuntimeError):
    """A policy callback found no EnergyCallback to take its figures from."""


class ConfigError(GreenCallbacksError, ValueError):
    """An argument is out of range or of the wrong type; the message names the fix."""


class TrackerConfigError(ConfigError):
    """A tracker or sampler setting is out of range."""


class CallbackConfigError(ConfigError):
    """An EnergyCallback argument is out of range."""


class CarbonConfigError(ConfigError):
    """A carbon intensity or PUE is out of range."""


class SignalNameError(ConfigError):
    """A signal name this platform does not know, or one that cannot be caught."""


class PolicyConfigError(ConfigError):
    """A policy argument is out of range or missing."""


class MonitorMissingError(PolicyConfigError, KeyError):
    """The metric a policy watches was not logged; the message lists what was."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OOMGuardConfigError(ConfigError):
    """An OOMGuard cannot change the batch size of this model or data; the message says how."""


class OOMFloorError(GreenCallbacksError, MemoryError):
    """Out of memory at the smallest batch size allowed; the message says what to try instead."""


class TooLargeError(ConfigError):
    """A size this machine cannot hold, refused before anything is allocated; says what fits."""


class CompressConfigError(ConfigError):
    """A compression argument or model is not one this step can work with."""


class UsageError(GreenCallbacksError, RuntimeError):
    """A callback or object was used out of order (outside the fit it belongs to)."""


class UnsafeTargetError(GreenCallbacksError, ValueError):
    """A write would replace something that is not a regular file (a device, a folder)."""


class CheckpointLoadError(GreenCallbacksError, RuntimeError):
    """No kept checkpoint could be resumed from; the message lists each one and why."""


class OutputError(GreenCallbacksError, RuntimeError):
    """Strict mode only: a logger, checkpoint or file the package writes failed."""


class FrameworkAPIError(GreenCallbacksError, RuntimeError):
    """A framework internal the package relies on changed; the message names the versions."""


class DistributedError(GreenCallbacksError, RuntimeError):
    """Strict mode: the processes of a job cannot sum their figures."""


class EnergySourceWarning(UserWarning):
    """A source of energy readings was skipped or dropped; figures carry on without it."""


class OutputFailureWarning(UserWarning):
    """A logger, a checkpoint or a file could not be written; training goes on without it."""


class InterruptedRunWarning(UserWarning):
    """A metered run ended without its end hook (an exception); its summary was written late."""


class DistributedWarning(UserWarning):
    """The processes of a job cannot sum their figures, or two of them meter the same domain."""


class MemoryLeakWarning(ResourceWarning):
    """Memory in use climbed epoch after epoch: the run may end in an out-of-memory crash."""


# Frames of these packages are skipped, so a warning points at the user's own line.
_FRAMEWORK_MODULES = (
    "green_callbacks", "lightning", "pytorch_lightning", "keras", "tensorflow",
    "transformers", "accelerate", "torch", "optuna", "tf_keras",
)  # fmt: skip


def warn(message: str, category: type[Warning] = EnergySourceWarning) -> None:
    """Issue a warning (an :class:`EnergySourceWarning` by default) attributed to the caller's code.

    The warning points at the first frame outside green_callbacks and the
    frameworks calling it, so users see their own line (``tracker.start()``,
    ``trainer.fit(...)``, ``model.fit(...)``), whatever the depth.
    """
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and _is_framework(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
        level += 1
    warnings.warn(f"green_callbacks: {message}", category, stacklevel=level)


def _is_framework(module: str) -> bool:
    return module.split(".", 1)[0] in _FRAMEWORK_MODULES


def output_failed(message: str, *, strict: bool, cause: BaseException | None = None) -> None:
    """A logger, checkpoint or file write failed: warn and go on, or raise in strict mode."""
    if strict:
        raise OutputError(f"strict mode: {message}") from cause
    warn(message, OutputFailureWarning)


def warn_renamed(owner: str, old: str, new: str, *, stacklevel: int = 3) -> None:
    """Say that ``owner``'s argument ``old`` is now ``new`` (accepted for one release)."""
    old = old if "=" in old else f"{old}=..."
    new = new if "=" in new else f"{new}=..."
    warnings.warn(
        f"{owner}({old}) is renamed {new}; the old name is accepted until the next "
        f"release: pass {new} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed(**old_to_new: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Accept the former names of keyword arguments for one release, with a warning.

    ``@renamed(eval_loader="eval_data")``: a call with ``eval_loader=`` works
    as ``eval_data=`` and warns. ``"x,y"`` as an old name folds the two into
    one ``(x, y)`` tuple (the former Keras held-out arguments).
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        owner = function.__qualname__.removesuffix(".__init__")

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            for old, new in old_to_new.items():
                names = old.split(",")
                if not all(name in kwargs for name in names):
                    continue
                was = "=..., ".join(names) + "=..."
                now = f"{new}=({', '.join(names)})" if len(names) > 1 else f"{new}=..."
                warn_renamed(owner, was, now)
                if new in kwargs:
                    raise ConfigError(f"{owner}: pass {new}= only (not also {old}=)")
                values = [kwargs.pop(name) for name in names]
                kwargs[new] = values[0] if len(values) == 1 else tuple(values)
            return function(*args, **kwargs)

        return wrapper

    return decorate


def require_number(
    name: str, value: object, error: type[ConfigError], *, integer: bool = False
) -> None:
    """Refuse a value that is not a finite real number (a whole one for ``integer``).

    Called before the range checks, so ``budget_j="100"`` or ``patience=2.5``
    gets a message naming the argument instead of a ``TypeError`` from deep inside.
    """
    kind = numbers.Integral if integer else numbers.Real  # numpy's numbers too
    number = isinstance(value, kind) and not isinstance(value, bool)
    if not number or not math.isfinite(value):  # type: ignore[arg-type]
        what = "a whole number" if integer else "a finite number"
        raise error(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
