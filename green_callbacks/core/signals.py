"""Catch termination signals and hold them until training reaches a safe point.

A scheduler's pre-emption warning (SIGUSR1, SIGTERM...) arrives at any
instant, in the middle of a step. :class:`SignalLatch` only notes it; the
checkpoint callbacks look at the latch after each batch, save, and end
training. The handlers that were installed before are still called
(except the default action, which would kill the process before the save).

Ctrl-C (SIGINT) is held the same way, with what users of long-running tools
expect: the first one asks for a save at the next safe point and a clean stop
(and says so on stderr), a second one before that point interrupts at once
(Python's ``KeyboardInterrupt``).

Example:
    >>> import os, signal
    >>> latch = SignalLatch(["SIGUSR1"]).install()
    >>> os.kill(os.getpid(), signal.SIGUSR1)
    >>> latch.pop(), latch.pop()
    ('SIGUSR1', '')
    >>> latch.restore()
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from green_callbacks.errors import SignalNameError, warn


def signal_number(name: str | int) -> signal.Signals:
    """``"SIGTERM"``, ``"TERM"`` or ``15`` -> ``signal.SIGTERM``, else a clear error."""
    try:
        if isinstance(name, int):
            return signal.Signals(name)
        upper = name.upper()
        return signal.Signals[upper if upper.startswith("SIG") else f"SIG{upper}"]
    except (KeyError, ValueError, AttributeError):
        known = ", ".join(sorted(s.name for s in signal.Signals)[:8])
        raise SignalNameError(
            f"unknown signal {name!r}; pass a name such as 'SIGTERM' or 'SIGUSR1' ({known}, ...)"
        ) from None


_UNCATCHABLE = ("SIGKILL", "SIGSTOP")


def signal_names(signals: Sequence[str | int] | str) -> tuple[str, ...]:
    """Check a list of signals now, when a callback is built: their canonical names.

    A single name (``"SIGTERM"``) counts as a list of one; ``SIGKILL`` and
    ``SIGSTOP`` cannot be caught, so they are refused.
    """
    if isinstance(signals, (str, int)):
        signals = (signals,)
    names = tuple(signal_number(s).name for s in signals)
    for name in names:
        if name in _UNCATCHABLE:
            raise SignalNameError(
                f"{name} cannot be caught by any process, so nothing can save on it; "
                "schedulers send SIGTERM (or a warning signal such as SIGUSR1) first: "
                "pass signals=('SIGTERM', 'SIGUSR1')"
            )
    return names


class SignalLatch:
    """Notes the first of ``signals`` received, for :meth:`pop` at a safe point.

    Args:
        signals: names or numbers.
        active: whether the run that will look at the latch is still going. A
            signal that arrives after it ended without :meth:`restore` (an
            exception skipped the end hook) puts the previous handlers back
            and is handled by them, as if the latch had never been there: a
            process is never left deaf to SIGTERM.
    """

    def __init__(self, signals: Sequence[str | int], active: Callable[[], bool] | None = None):
        self.signals = tuple(signal_number(s) for s in signals)
        self._active = active
        self._received = ""
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> SignalLatch:
        """Install the handlers (main thread only; elsewhere warn and do nothing)."""
        if threading.current_thread() is not threading.main_thread():
            warn("signal handlers can only be installed from the main thread; not latching signals")
            return self
        for number in self.signals:
            self._previous[number] = signal.getsignal(number)
            signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        previous = self._previous.get(signal.Signals(number))
        if self._active is not None and not self._active():
            self.restore()
            _deliver(number, frame, previous)
            return
        if number == signal.SIGINT:
            if self._received == name and callable(previous):  # a second Ctrl-C: now
                previous(number, frame)
                return
            sys.stderr.write(
                "\ngreen_callbacks: Ctrl-C: saving at the end of this batch and stopping; "
                "press Ctrl-C again to interrupt now\n"
            )
        if not self._received:
            self._received = name
        if callable(previous) and number != signal.SIGINT:
            previous(number, frame)

    def pop(self) -> str:
        """The name of the signal received since the last pop, or ``""``."""
        received, self._received = self._received, ""
        return received

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


def _deliver(number: int, frame: FrameType | None, handler: Any) -> None:
    """Handle a signal the way ``handler`` (as ``signal.getsignal`` returned it) would."""
    if callable(handler):
        handler(number, frame)
    elif handler in (signal.SIG_DFL, None):
        os.kill(os.getpid(), number)  # the default action, now that it is installed again
