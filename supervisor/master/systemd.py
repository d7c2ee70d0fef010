"""systemd's notify protocol (``Type=notify``), spoken by the master only.

``READY=1`` is sent once every worker reported ready, not when the socket is
bound (gunicorn sends it before any worker exists); ``STATUS=`` says how many
are ready; ``RELOADING=1`` and ``STOPPING=1`` mark a reload and a stop; with
``WatchdogSec=`` set, the master's loop sends ``WATCHDOG=1`` at half the
interval, so a wedged master gets restarted. Without ``NOTIFY_SOCKET`` every
call is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path  # abstract namespace


def notify(*fields: str) -> bool:
    """Send ``KEY=value`` fields in one datagram; False when not under systemd."""
    address = _address()
    if address is None:
        return False
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall("\n".join(fields).encode())
        return True
    return False


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())) or _address() is None:
        return None
    try:
        return max(int(usec) / 2_000_000, 0.01)
    except ValueError:
        return None


def monotonic_usec() -> str:
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
