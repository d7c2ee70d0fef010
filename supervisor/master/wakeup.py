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
import threading
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
        self.pending = bytearray()  # signals read from the pipe, not yet acted on
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
        # A re-executed master comes with them blocked (hold_for_exec): what arrived
        # meanwhile is delivered now, to these handlers.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals.MASTER)

    def hold_for_exec(self) -> Any:
        """Before the master re-executes itself: block its signals, and make
        each one received but not yet acted on pending again. A signal's
        default action would otherwise end the new image before it has its
        handlers (a TERM then orphans the workers), and one recorded here
        would be lost with this image. The mask and what is pending survive
        the exec; :meth:`open` unblocks them once the handlers are in.
        Returns the mask to give back with :meth:`release`."""
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals.MASTER)
        if self.wake_r >= 0:
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(self.wake_r, 256):
                    self.pending += chunk
        handled = {int(sig) for sig in signals.MASTER}
        for signum in dict.fromkeys(self.pending):
            if signum in handled:
                signal.pthread_kill(threading.get_ident(), signum)
        self.pending.clear()
        return mask

    def release(self, mask: Any) -> None:
        """Still this image (the exec failed): what was held is delivered now."""
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)

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

    def wait(self, timeout: float | None) -> tuple[bytearray, list[tuple[int, object]]]:
        """Sleep until a signal, a readable pipe or ``timeout``: the signals
        received and not yet acted on (the caller takes them off the front, one
        at a time), then (fd, data) for each other readable descriptor."""
        assert self.selector is not None
        events = self.selector.select(timeout)
        if any(key.fd == self.wake_r for key, _ in events):
            with contextlib.suppress(BlockingIOError):
                self.pending += os.read(self.wake_r, 256)
        return self.pending, [(key.fd, key.data) for key, _ in events if key.fd != self.wake_r]

    def fds(self) -> list[int]:
        """Descriptors only the master may hold; a new worker closes them."""
        fds = [self.wake_r, self.wake_w, self.lifeline_w]
        fileno = getattr(self.selector, "fileno", None)  # epoll/kqueue hold a descriptor
        if callable(fileno):
            fds.append(fileno())
        return fds
