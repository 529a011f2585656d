"""Errors and warnings raised by green_callbacks.

One base class, :class:`GreenCallbacksError`; each subclass also derives from the
matching built-in (``ValueError``, ``PermissionError``, ``RuntimeError``,
``ImportError``) so callers can catch either.
"""

from __future__ import annotations


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


class TrackerStateError(GreenCallbacksError, RuntimeError):
    """The tracker was used out of order (closing a window twice, reading before start)."""


class MissingExtraError(GreenCallbacksError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class EnergySourceWarning(UserWarning):
    """A source of energy readings was skipped or dropped; figures carry on without it."""
