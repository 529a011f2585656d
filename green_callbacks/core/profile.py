"""A light profile of a few training steps: does the user's own code run in Python what
the array library could run as one operation (the advisor's P8)?

For ``steps`` training steps, after ``skip`` warm-up steps, :class:`StepProfile`
installs a :func:`sys.setprofile` function on the training thread. It counts
only while one of the user's own functions is on the stack, entered during
the step: the framework calls it (``training_step``, ``forward``, a custom
layer's ``call``), and whatever it calls, the library's Python included, is
the cost of how it is written. Two figures come out:

- ``python_time_share``: the share of the steps' time spent running Python
  under the user's code. Each interval between two profile events is time in
  a native function (after a ``c_call``) or in Python (after any other event).
- ``line_calls_per_sample``: the most calls any one line of the user's code
  made in a step, per sample of the step, and that line (``busiest_line``,
  ``path:line``). A batched model's lines each call a few functions a step; a
  Python loop over the batch calls from one line once or more per sample
  (``[self.net(x) for x in batch]``). A loop over layers repeats too, once per
  layer a step: a model with as many layers as samples in a batch reads like
  a loop over the samples, which is why the line is named.

A small model spends most of its step in Python however it is written (its
operations are short), so the share says little alone. An operator such as
``a @ b`` runs without a profile event: its time counts as Python and it is
not a call. The profile function's own time is measured and left out of the
share (``profile_overhead_s`` reports it: timed under the user's code, and
outside it counted and costed at a calibrated time an event); the
interpreter's cost of calling it, about a tenth of a microsecond an event,
is not. User code is any file
outside the standard library, installed packages and green_callbacks (a
notebook cell and a script count as the user's).

Example, a fake training step with a Python loop over 8 samples:
    >>> def forward(batch):
    ...     return [abs(row) for row in batch]  # one call a sample, from one line
    >>> def mine(code):  # the doctest's code is the user's (a real run asks is_user_code)
    ...     return code.co_name in ("forward", "<listcomp>")
    >>> profile = StepProfile(steps=1, skip=0, is_user=mine)
    >>> profile.step_start(); _ = forward(list(range(8))); facts = profile.step_end(8)
    >>> facts["line_calls_per_sample"], facts["profile_steps"]
    (1.0, 1)
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

PROFILE_STEPS = 3
"""Training steps profiled in a run that writes a summary."""
PROFILE_SKIP = 5
"""Training steps left to warm up (compilation, caches, allocator) before the profile."""


def _library_roots() -> tuple[str, ...]:
    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    paths.add(site.getusersitepackages())
    paths.add(str(Path(__file__).resolve().parents[1]))  # green_callbacks itself
    roots = {os.path.join(p, "") for p in paths if p}  # as imported, and symlinks resolved
    roots.update(os.path.join(os.path.realpath(p), "") for p in paths if p)
    return tuple(roots)


_ROOTS = _library_roots()
_FILES: dict[str, bool] = {}  # file name -> the user's? (asked once a file)


def is_user_code(code: CodeType) -> bool:
    """Whether ``code`` is the user's: not in the standard library, an installed package,
    green_callbacks, frozen modules or code torch generates (``<eval_with_key>``)."""
    name = code.co_filename
    user = _FILES.get(name)
    if user is None:
        if name.startswith("<"):
            user = not name.startswith(("<frozen", "<eval_with_key"))
        else:
            user = not (name.startswith(_ROOTS) or os.path.realpath(name).startswith(_ROOTS))
        _FILES[name] = user
    return user


class StepProfile:
    """Profiles ``steps`` training steps after ``skip`` others; see the module's text.

    Args:
        steps: steps profiled.
        skip: steps before them left alone.
        is_user: which code objects are the user's (default :func:`is_user_code`).
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        steps: int = PROFILE_STEPS,
        skip: int = PROFILE_SKIP,
        *,
        is_user: Callable[[CodeType], bool] = is_user_code,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self._left, self._skip = steps, skip
        self._is_user = is_user
        self._user: dict[CodeType, bool] = {}  # each code object's answer, asked once
        self._calls: dict[tuple[CodeType, int], int] = {}  # (code, line) -> calls this step
        self._clock = clock
        self._steps = 0
        self._samples = 0
        self._step_s = self._python_s = self._own_s = 0.0
        self._busiest: tuple[float, str] = (0.0, "")  # calls per sample, path:line
        self._depth = 0  # the user's frames entered this step and not yet left
        self._outside = 0  # events outside the user's code (their cost: counted, estimated)
        self._per_event_s: float | None = None
        self._native = False  # the current interval runs a native function
        self._last = self._started = 0.0
        self.running = False
        """Whether the profile function is installed now."""

    def step_start(self) -> None:
        """A training step begins (after its batch was loaded)."""
        if self._skip:
            self._skip -= 1
            return
        if self.running:  # the step goes on (its batches accumulate gradients)
            return
        if self._left <= 0 or sys.getprofile() is not None:  # done, or another profiler runs
            self._left = 0
            return
        self._depth, self._native = 0, False
        self._calls.clear()
        self.running = True
        if self._per_event_s is None:
            self._per_event_s = self._calibrate()
        self._started = self._last = self._clock()
        sys.setprofile(self._event)

    def _calibrate(self, events: int = 256) -> float:
        """Seconds the profile function takes for an event outside the user's code (those
        are not timed one by one: each would cost two clock reads)."""
        frame = sys._getframe()
        start = self._clock()
        for _ in range(events):
            self._event(frame, "c_return", None)
        per_event = (self._clock() - start) / events
        self._outside -= events
        return per_event

    def cancel(self) -> None:
        """Profile no more (the run ended with a step unfinished): the profile function
        takes itself off at its next event, on the thread it profiles."""
        self._left = 0
        self.running = False

    def step_end(self, samples: int) -> dict[str, Any] | None:
        """The step ended with ``samples`` samples; the facts once the last step is profiled."""
        if not self.running:
            return None
        sys.setprofile(None)
        now = self._clock()
        self._account(now)
        self.running = False
        self._step_s += now - self._started
        self._samples += samples
        self._steps += 1
        if self._calls and samples > 0:
            (code, line), calls = max(self._calls.items(), key=lambda item: item[1])
            if calls / samples > self._busiest[0]:
                self._busiest = (calls / samples, f"{code.co_filename}:{line}")
        self._left -= 1
        return self.facts() if self._left == 0 else None

    def facts(self) -> dict[str, Any]:
        """What the profile found so far (the summary's facts)."""
        own_s = self._own_s + self._outside * (self._per_event_s or 0.0)
        step_s = self._step_s - own_s
        facts: dict[str, Any] = {
            "profile_steps": self._steps,
            "profile_overhead_s": own_s,
            "python_time_share": min(max(self._python_s / step_s, 0.0), 1.0) if step_s > 0 else 0.0,
        }
        if self._samples:
            facts["line_calls_per_sample"], facts["busiest_line"] = self._busiest
        return facts

    def _account(self, now: float) -> None:
        if self._depth > 0 and not self._native:
            self._python_s += now - self._last

    def _mine(self, code: CodeType) -> bool:
        """Whether ``code`` is the user's (asked once a code object)."""
        user = self._user.get(code)
        if user is None:
            user = self._user[code] = self._is_user(code)
        return user

    def _event(self, frame: FrameType, event: str, arg: Any) -> None:
        if self._depth == 0:  # outside the user's code: only a call into it matters
            self._outside += 1
            if event != "call":
                if not self.running:  # cancelled from elsewhere: only this thread can take it off
                    sys.setprofile(None)
                return
            if self._mine(frame.f_code):  # the user's code starts: from here every interval counts
                self._depth = 1
                self._native = False
                self._last = self._clock()
            return
        if not self.running:
            sys.setprofile(None)
            return
        now = self._clock()
        self._account(now)  # the interval since the last event, in the state it ran in
        self._native = event == "c_call"
        if event == "c_call":
            self._count(frame)  # a native function called from this frame
        elif event == "call" or event == "return":
            user = self._mine(frame.f_code)
            if event == "call":
                if frame.f_back is not None:
                    self._count(frame.f_back)
                if user:
                    self._depth += 1
            elif user:
                self._depth -= 1
        self._last = self._clock()
        self._own_s += self._last - now

    def _count(self, caller: FrameType) -> None:
        """A call from ``caller``'s current line, counted if the line is the user's."""
        if self._mine(caller.f_code):
            key = (caller.f_code, caller.f_lineno)
            self._calls[key] = self._calls.get(key, 0) + 1
