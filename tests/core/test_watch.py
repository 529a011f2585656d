"""The watcher that ends a run whose framework call raised, and the signal latch that lets go."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from green_callbacks.core.signals import SignalLatch
from green_callbacks.core.watch import CallWatch, Watcher


class Loop:
    def fit(self, body: Any) -> Any:
        return body(self)


def test_the_watcher_calls_on_gone_once_after_the_call_raised() -> None:
    gone: list[float] = []
    watchers: list[Watcher] = []
    lock = threading.RLock()

    def body(owner: Loop) -> None:
        watch = CallWatch.find(lambda candidate: candidate is owner, ("fit",))
        assert watch is not None and watch.alive()
        watchers.append(Watcher(watch, lambda: gone.append(time.monotonic()), lock, 0.01).start())
        time.sleep(0.05)
        assert gone == []  # alive while the call runs
        raise KeyError("the step failed")

    try:
        Loop().fit(body)
    except KeyError:
        ended = time.monotonic()
    watchers[0]._thread.join(timeout=5.0)
    assert len(gone) == 1 and 0.0 <= gone[0] - ended < 1.0
    assert not watchers[0]._thread.is_alive()


def test_find_takes_the_outermost_call_and_none_without_one() -> None:
    def body(owner: Loop) -> CallWatch | None:
        return Loop().fit(lambda inner: CallWatch.find(lambda c: c in (owner, inner), ("fit",)))

    outer = Loop()
    watch = outer.fit(body)
    assert watch is not None and watch.code is Loop.fit.__code__
    assert CallWatch.find(lambda candidate: True, ("no_such_call",)) is None


def test_stopping_while_holding_the_lock_does_not_wait_for_the_watcher() -> None:
    lock = threading.RLock()
    gone: list[bool] = []
    watch = CallWatch(threading.get_ident(), 0, Loop.fit.__code__)  # never on the stack
    with lock:
        watcher = Watcher(watch, lambda: gone.append(True), lock, 0.01).start()
        time.sleep(0.05)  # it saw the call gone and waits for the lock
        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 1.0
    assert gone == [] and not watcher._thread.is_alive()


def test_a_latch_whose_run_is_over_gives_the_signal_to_the_handler_before_it() -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: received.append(number))
    running = [True]
    try:
        latch = SignalLatch(["SIGUSR2"], active=lambda: running[0]).install()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert latch.pop() == "SIGUSR2" and received == [signal.SIGUSR2]  # latched and chained
        running[0] = False  # the run ended without restore()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert latch.pop() == "" and received == [signal.SIGUSR2] * 2
        assert signal.getsignal(signal.SIGUSR2).__name__ == "<lambda>"
    finally:
        signal.signal(signal.SIGUSR2, previous)
