"""Notice a framework call that ended without its end hook, from another thread.

Keras's ``fit`` and Hugging Face's ``Trainer.train`` call no callback hook
when they raise: the callback's ``on_train_end`` never runs, so the metered
run would stay open (its sampler thread running, its summary unwritten)
until the next run or the process's exit. :class:`CallWatch` remembers the
frame of the call a run belongs to; :class:`Watcher` looks every
``interval_s`` whether that frame is still on its thread's stack and, once it
is gone, ends the run. Only frame identities are compared from the watching
thread (as ``faulthandler`` does); nothing of the training thread is touched.

Example:
    >>> import threading
    >>> class Model:
    ...     def fit(self, watch_from):
    ...         return watch_from(self)
    >>> def watch_from(model):
    ...     return CallWatch.find(lambda owner: owner is model, ("fit",))
    >>> watch = Model().fit(watch_from)      # found while fit was running...
    >>> watch is not None, watch.alive()     # ...and gone once it returned
    (True, False)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Collection
from types import CodeType, FrameType

WATCH_INTERVAL_S = 0.2
"""How often a :class:`Watcher` looks; a failed run is closed within this. Units: s."""


class CallWatch:
    """The frame of a running call, recognisable later from any thread.

    Args:
        thread_id: ``threading.get_ident()`` of the thread running the call.
        frame_id: ``id()`` of the call's frame (no reference is kept, so its
            locals are freed when it returns).
        code: the frame's code object, checked together with the id.
    """

    def __init__(self, thread_id: int, frame_id: int, code: CodeType):
        self.thread_id = thread_id
        self.frame_id = frame_id
        self.code = code

    @classmethod
    def find(cls, is_owner: Callable[[object], bool], names: Collection[str]) -> CallWatch | None:
        """The outermost caller named one of ``names`` whose ``self`` passes ``is_owner``.

        Called from inside the call (a callback hook). None if no such frame
        is on the stack (the framework renamed its method: nothing is watched).
        """
        found: FrameType | None = None
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name in names and is_owner(frame.f_locals.get("self")):
                found = frame  # keep going: fit calls evaluate, the outer one is the run
            frame = frame.f_back
        if found is None:
            return None
        watch = cls(threading.get_ident(), id(found), found.f_code)
        del found, frame
        return watch

    def alive(self) -> bool:
        """Whether the call is still running (its frame is on its thread's stack)."""
        frame: FrameType | None = sys._current_frames().get(self.thread_id)
        while frame is not None:
            if id(frame) == self.frame_id and frame.f_code is self.code:
                return True
            frame = frame.f_back
        return False


class Watcher:
    """A daemon thread that calls ``on_gone`` once, when ``watch`` stops being alive.

    Args:
        watch: the call to watch.
        on_gone: what to do when it has ended (runs on the watcher's thread).
        lock: held while ``on_gone`` runs; :meth:`stop` may be called by a thread
            holding it (the watcher then gives up instead of waiting for it).
        interval_s: seconds between looks.
    """

    def __init__(
        self,
        watch: CallWatch,
        on_gone: Callable[[], None],
        lock: threading.RLock,
        interval_s: float = WATCH_INTERVAL_S,
    ):
        self.watch = watch
        self._on_gone = on_gone
        self._lock = lock
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="green-callbacks-watch", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            if not self.watch.alive():
                break
        else:
            return
        while not self._lock.acquire(timeout=self._interval_s):
            if self._stop.is_set():
                return
        try:
            if not self._stop.is_set():
                self._on_gone()
        finally:
            self._lock.release()

    def stop(self) -> None:
        """Stop looking (idempotent; callable from ``on_gone`` itself)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
