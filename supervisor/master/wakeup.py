"""The master's sleep: one selector over the signal pipe, the workers' report
pipes and the health endpoint, plus the lifeline every worker watches.

Signal handlers do nothing in Python; ``signal.set_wakeup_fd`` writes each
signal's number into a pipe at C level, and :meth:`Wakeup.wait` returns those
bytes as the loop's signal queue.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
from collections.abc import Callable
from typing import Any

from supervisor.shared import signals

Handler = Callable[[int, Any], None]


def record_only(signum: int, frame: object) -> None:
    """Installed for every handled signal so the C handler writes its number to
    the wake-up pipe; the loop does the work. Nothing else is safe here."""


class Wakeup:
    def __init__(self) -> None:
        self.selector: selectors.BaseSelector | None = None
        self.wake_r = self.wake_w = -1
        # A pipe whose write end only the master holds: a worker reads
        # end-of-file on it when the master is gone, even after a SIGKILL.
        self.lifeline_r = self.lifeline_w = -1
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup = -1

    def open(self, on_stop: Handler) -> None:
        """Take the handled signals; until :meth:`arm`, a stop signal runs
        ``on_stop`` (which interrupts whatever start-up is waiting for)."""
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        self.lifeline_r, self.lifeline_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self._old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in signals.MASTER:
            self._old_handlers[sig] = signal.signal(sig, on_stop if sig in signals.STOP else record_only)

    def arm(self) -> None:
        """From here on the loop acts on every signal; handlers only record."""
        for sig in signals.STOP:
            signal.signal(sig, record_only)

    def restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_wakeup)

    def close(self) -> None:
        if self.selector is not None:
            self.selector.close()
        for fd in (self.wake_r, self.wake_w, self.lifeline_r, self.lifeline_w):
            if fd >= 0:
                os.close(fd)

    def watch(self, fd: int, data: object) -> None:
        if self.selector is not None:
            self.selector.register(fd, selectors.EVENT_READ, data)

    def unwatch(self, fd: int) -> None:
        if self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)

    def wait(self, timeout: float | None) -> tuple[bytes, list[tuple[int, object]]]:
        """Sleep until a signal, a readable pipe or ``timeout``: the signals
        received, then (fd, data) for each other readable descriptor."""
        assert self.selector is not None
        events = self.selector.select(timeout)
        signals = b""
        if any(key.fd == self.wake_r for key, _ in events):
            with contextlib.suppress(BlockingIOError):
                signals = os.read(self.wake_r, 256)
        return signals, [(key.fd, key.data) for key, _ in events if key.fd != self.wake_r]

    def fds(self) -> list[int]:
        """Descriptors only the master may hold; a new worker closes them."""
        fds = [self.wake_r, self.wake_w, self.lifeline_w]
        fileno = getattr(self.selector, "fileno", None)  # epoll/kqueue hold a descriptor
        if callable(fileno):
            fds.append(fileno())
        return fds
