"""What a worker tells the master: a report pipe and a shared heartbeat.

The heartbeat is a few bytes of anonymous shared memory mapped before fork.
The worker writes its monotonic clock there; the master reads it when it
checks deadlines. Beats cost the master no system call and no wake-up, so an
idle master sleeps until the earliest deadline instead of polling.
``CLOCK_MONOTONIC`` is system-wide on Linux, so both sides compare the same clock.

After those two words come the worker's request counts (:class:`Load`): its
managed queue's state, what it refused, abandoned or cancelled, and a
histogram of queue times, written by the worker and read by the master with
no system call either.

The pipe carries rare, ordered events as text lines: ``ready`` and
``error <exit code> <message>`` (written just before a worker exits), and
``pool <json>`` (pool sizes, each time the worker logs its pool statistics).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import time
from collections.abc import Sequence
from typing import Any

# What a worker counts of its requests (worker/admission.py writes, the master
# reads), in the words of its heartbeat page after the beat and the work count.
COUNTERS = ("admitted", "shed", "left_queued", "left_running", "cancelled", "expired", "bad_request_start")
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # seconds; then +inf


class Load:
    """Where each count lives among the load words."""

    OVERLOADED = 0  # 1 while the worker's managed queue is overloaded
    FIRST_COUNTER = 1
    FIRST_BUCKET = FIRST_COUNTER + len(COUNTERS)  # queue-time histogram, one word per bucket
    SIZE = FIRST_BUCKET + len(QUEUE_BUCKETS) + 1

    @classmethod
    def read(cls, words: Sequence[int]) -> dict[str, Any]:
        """The counts, as ``status`` and ``/metrics`` show them."""
        counts = {name: int(words[cls.FIRST_COUNTER + i]) for i, name in enumerate(COUNTERS)}
        buckets = [int(words[cls.FIRST_BUCKET + i]) for i in range(len(QUEUE_BUCKETS) + 1)]
        return {"overloaded": bool(words[cls.OVERLOADED]), **counts, "queue_buckets": buckets}


READY = "ready"
ERROR = "error"
RECYCLE = "recycle"  # "replace me": unhealthy, or a recycling limit was reached
POOL = "pool"  # the worker's pool sizes, as JSON, for `supervise status`
RETIRE = "retire"  # master -> worker: you are being replaced; finish politely
PROMOTE = "promote"  # master -> worker: finish politely, then become the mold (reforking)
MOLD = "mold"  # worker -> master: I am the mold now, ready to fork workers
DUE = "due"  # worker -> master: I served my --refork-after count (promote me, or another)
SPAWN = "spawn"  # master -> mold (with fds): fork a worker for this slot
SPAWNED = "spawned"  # mold -> master: its pid; or FAILED with an errno
FAILED = "failed"
NOMOLD = "nomold"  # worker -> master: promoted, it cannot be the mold (why): reforking is off


class Heartbeat:
    """One worker's shared heartbeat slot: its last beat (monotonic seconds)
    and the units of work it has done, each an aligned 8-byte word.

    Each field is written with one 8-byte store, never through
    ``struct.pack_into``: that zeroes its destination before it writes, and a
    master reading the page in between saw a beat of 0.0 (a healthy worker
    judged silent since the machine booted)."""

    def __init__(self, fd: int = -1) -> None:
        """A new page (shared with the children forked after it), or the page of
        ``fd``, a memfd another process made and handed over (a reforked
        worker's: the master made it, the mold passed it on)."""
        # MAP_SHARED; anonymous unless it comes from an fd
        self._mm: mmap.mmap | None = mmap.mmap(fd, mmap.PAGESIZE)
        view = memoryview(self._mm)
        self._last: memoryview[float] | None = view[0:8].cast("d")
        self._work: memoryview[int] | None = view[8:16].cast("Q")
        self.load: Sequence[int] = view[16 : 16 + 8 * Load.SIZE].cast("Q")  # see Load
        view.release()
        if fd < 0:
            self.beat()

    @classmethod
    def shareable(cls) -> tuple[Heartbeat, int]:
        """A new page that can be handed to an unrelated process, and its fd
        (the caller closes it once handed over)."""
        fd = os.memfd_create("supervise-heartbeat", os.MFD_CLOEXEC)
        os.ftruncate(fd, mmap.PAGESIZE)
        return cls(fd), fd

    @classmethod
    def none(cls) -> Heartbeat:
        """A heartbeat nobody writes (a worker adopted from the previous image)."""
        hb = cls.__new__(cls)
        hb._mm = hb._last = hb._work = None
        hb.load = (0,) * Load.SIZE
        return hb

    def beat(self, now: float | None = None) -> None:
        if self._last is not None:
            self._last[0] = time.monotonic() if now is None else now

    @property
    def last(self) -> float:
        return float(self._last[0]) if self._last is not None else 0.0

    @property
    def work(self) -> int:
        return int(self._work[0]) if self._work is not None else 0

    def add_work(self, n: int = 1) -> None:
        # only the worker writes its page: a read-then-write of this word is safe
        if self._work is not None:
            self._work[0] += n

    def close(self) -> None:
        for view in (self._last, self._work, self.load):
            if isinstance(view, memoryview):
                view.release()
        self._last = self._work = None
        self.load = (0,) * Load.SIZE
        if self._mm is not None:
            self._mm.close()
            self._mm = None


def send(fd: int, kind: str, text: str = "") -> None:
    """Write one message; a short line is written atomically on a pipe."""
    line = f"{kind} {text}".strip().replace("\n", " ")
    # If the master is gone the write fails; the lifeline will tell the worker.
    with contextlib.suppress(OSError):
        os.write(fd, (line[:3000] + "\n").encode("utf-8", "replace"))


def send_error(fd: int, code: int, message: str) -> None:
    send(fd, ERROR, f"{code} {message}")


def parse_error(text: str) -> tuple[int, str]:
    code, _, message = text.partition(" ")
    try:
        return int(code), message
    except ValueError:
        return 1, text


class LineReader:
    """Split a non-blocking pipe's bytes into complete lines."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]
