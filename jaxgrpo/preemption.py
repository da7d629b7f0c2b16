"""Preemption: SIGTERM, SIGINT or SIGUSR1 during ``train``, ``sweep`` or ``sft`` asks the run to
stop at the end of the compiled chunk in flight, with a checkpoint of the iteration reached.

    with preemption.handling():          # the command line wraps each command in it
        ...                              # a chunk loop calls preemption.check(...) between
                                         # chunks: it raises Preempted once a signal came

A second signal ends the process at once with the conventional status ``128 + signal``
(143 for SIGTERM), unsaved work lost. The compiled chunk blocks the main thread, where
Python runs its signal handlers; so a watcher thread reads the signals from a wakeup pipe
(``signal.set_wakeup_fd``, written by the C-level handler as the signal arrives) to count
them while a chunk runs. The Python-level handler (run by the main thread as soon as the
chunk returns) records the first signal too, so the check after a chunk always sees a
signal that arrived during it.

Outside ``handling()`` (and off the main thread, where signals cannot be handled) nothing
changes: ``check`` never raises.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Preempted(Exception):
    """The run stopped on a signal after ``iteration`` iterations (checkpointed when > 0) in
    ``out``; ``signum`` the signal."""

    def __init__(self, out, iteration: int, signum: int):
        self.out, self.iteration, self.signum = out, iteration, signum
        super().__init__(f"{signal.Signals(signum).name} at iteration {iteration}")


class _Handler:
    """The signals received while ``handling()`` is active."""

    def __init__(self):
        self.signum: int | None = None      # the first signal, once one came
        self.count = 0                      # signals seen by the watcher thread
        self.lock = threading.Lock()

    def first(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum

    def seen(self, signum: int) -> None:
        """A signal as the watcher thread sees it (at once, even while a chunk runs)."""
        with self.lock:
            self.count += 1
            second = self.count > 1
        self.first(signum)
        if second:
            name = signal.Signals(signum).name
            os.write(2, f"jaxgrpo: second signal ({name}): stopping at once, without a "
                        "checkpoint\n".encode())
            os._exit(128 + signum)


_ACTIVE: _Handler | None = None


def active() -> bool:
    """Whether ``handling()`` is active."""
    return _ACTIVE is not None


def requested() -> int | None:
    """The first signal received inside ``handling()``, or None."""
    return None if _ACTIVE is None else _ACTIVE.signum


def check(out, iteration: int, save=None, agree=None) -> None:
    """Between chunks: when a signal came, call ``save()`` (which writes the checkpoint of
    ``iteration`` and the partial results) and raise ``Preempted(out, iteration, signum)``.
    ``agree(signum or 0) -> signum or 0``: the signal every process of a multi-process job
    acts on (called whenever ``handling()`` is active, so that all processes stop together)."""
    signum = requested()
    if agree is not None and active():
        signum = agree(signum or 0) or None
    if signum is None:
        return
    if save is not None:
        save()
    raise Preempted(out, iteration, signum)


def _watch(r: int, handler: _Handler) -> None:
    while True:
        try:
            data = os.read(r, 64)
        except OSError:
            return
        if not data:
            return
        for b in data:
            if b == 0:                       # handling() ended
                return
            if b in {int(s) for s in SIGNALS}:
                handler.seen(b)


@contextlib.contextmanager
def handling():
    """Catch ``SIGNALS`` in the block: the first asks the chunk loops to stop (``check``), a
    second ends the process at once (status ``128 + signal``). The previous handlers are back
    afterwards. A no-op off the main thread or when already active."""
    global _ACTIVE
    if threading.current_thread() is not threading.main_thread() or _ACTIVE is not None:
        yield
        return
    handler = _Handler()
    r, w = os.pipe()
    os.set_blocking(w, False)
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    old = {s: signal.signal(s, lambda signum, frame: handler.first(signum)) for s in SIGNALS}
    watcher = threading.Thread(target=_watch, args=(r, handler), daemon=True,
                               name="jaxgrpo-signals")
    watcher.start()
    _ACTIVE = handler
    try:
        yield
    finally:
        _ACTIVE = None
        for s, h in old.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(old_fd)
        try:
            os.write(w, b"\0")
        except OSError:
            pass
        watcher.join(timeout=1)
        os.close(w)
        os.close(r)
