"""What a worker tells the master: a report pipe and a shared heartbeat.

The heartbeat is a few bytes of anonymous shared memory mapped before fork.
The worker writes its monotonic clock there; the master reads it when it
checks deadlines. Beats cost the master no system call and no wake-up, so an
idle master sleeps until the earliest deadline instead of polling.
``CLOCK_MONOTONIC`` is system-wide on Linux, so both sides compare the same clock.

The pipe carries rare, ordered events as text lines: ``ready`` and
``error <exit code> <message>`` (written just before a worker exits), and
``pool <json>`` (pool sizes, each time the worker logs its pool statistics).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import time

_LAYOUT = struct.Struct("dQ")  # last beat (monotonic s), units of work done

READY = "ready"
ERROR = "error"
RECYCLE = "recycle"  # "replace me": unhealthy, or a recycling limit was reached
POOL = "pool"  # the worker's pool sizes, as JSON, for `supervise status`
RETIRE = "retire"  # master -> worker: you are being replaced; finish politely


class Heartbeat:
    """One worker's shared heartbeat slot."""

    def __init__(self) -> None:
        self._mm: mmap.mmap | None = mmap.mmap(-1, mmap.PAGESIZE)  # MAP_SHARED | MAP_ANONYMOUS
        self.beat()

    @classmethod
    def none(cls) -> Heartbeat:
        """A heartbeat nobody writes (a worker adopted from the previous image)."""
        hb = cls.__new__(cls)
        hb._mm = None
        return hb

    def beat(self, now: float | None = None) -> None:
        if self._mm is not None:
            _LAYOUT.pack_into(self._mm, 0, time.monotonic() if now is None else now, self.work)

    @property
    def last(self) -> float:
        return _LAYOUT.unpack_from(self._mm, 0)[0] if self._mm is not None else 0.0

    @property
    def work(self) -> int:
        return int(_LAYOUT.unpack_from(self._mm, 0)[1]) if self._mm is not None else 0

    def add_work(self, n: int = 1) -> None:
        if self._mm is not None:
            last, work = _LAYOUT.unpack_from(self._mm, 0)
            _LAYOUT.pack_into(self._mm, 0, last, work + n)

    def close(self) -> None:
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
