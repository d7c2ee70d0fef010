"""The client side of the control socket: ``supervise status``, ``reload``,
``scale`` and ``stop`` find the running master (by ``--pid FILE`` or the
control socket, resolved from the same settings as the master's) and ask it.

Every failure is one line and an exit code: no master running is
:class:`NotRunningError` (exit 7); a refusal by the master (a scale over the
connection budget) is a :class:`~supervisor.errors.ConfigError` (exit 2), as
the same request at start would be.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from supervisor.control import paths
from supervisor.control.pidfile import alive, read_pid
from supervisor.errors import ConfigError, ExitCode, SupervisorError
from supervisor.settings.config import Config

REPLY_TIMEOUT = 10.0  # the master answers from its loop at once; a hung one is reported


class NotRunningError(SupervisorError):
    exit_code = ExitCode.NOT_RUNNING


def locate(config: Config) -> Path:
    """The control socket of the master these settings describe, after
    checking what the pid file (if any) says about it."""
    path = paths.socket_path(config)
    if config.pid:
        pidfile = Path(config.pid)
        pid = read_pid(pidfile)
        if pid is None:
            raise NotRunningError(f"no master is running: pid file {pidfile} does not exist or is empty")
        if not alive(pid):
            raise NotRunningError(
                f"no master is running: pid file {pidfile} names pid {pid}, which has exited"
            )
    if path is None:
        raise ConfigError(
            "the control socket is off (--control-socket none); signals still work: kill -HUP <master pid>"
        )
    return path


def call(path: Path, request: dict[str, Any], timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
    """Send one request, return the master's reply; raise on a refusal."""
    sock = connect(path)
    try:
        sock.settimeout(timeout)
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = read_reply(sock, path)
    finally:
        sock.close()
    return reply


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(REPLY_TIMEOUT)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NotRunningError(
            f"no master is running: nothing listens on {path} "
            "(started elsewhere? pass its --pid FILE or --control-socket, or run from its directory)"
        ) from None
    except PermissionError:
        sock.close()
        raise ConfigError(f"control socket {path}: permission denied (run as the master's user)") from None
    except OSError as exc:
        sock.close()
        raise NotRunningError(f"cannot reach the master at {path}: {exc.strerror or exc}") from None
    if not paths.peer_allowed(sock):
        sock.close()
        raise ConfigError(f"control socket {path} is served by another user's process; not talking to it")
    return sock


def read_reply(sock: socket.socket, path: Path) -> dict[str, Any]:
    data = b""
    try:
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise SupervisorError(f"the master at {path} did not answer within {REPLY_TIMEOUT:g} s") from None
    try:
        reply = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        raise SupervisorError(f"the master at {path} closed the connection without an answer") from None
    if not isinstance(reply, dict):
        raise SupervisorError(f"the master at {path} answered something unexpected")
    if not reply.get("ok"):
        raise ConfigError(str(reply.get("error", "refused")))
    return reply


def stop(path: Path, fast: bool, wait: float | None) -> dict[str, Any]:
    """Ask the master to stop; with ``wait``, return once it has exited
    (its end of the connection closes when the process ends)."""
    sock = connect(path)
    try:
        sock.sendall(json.dumps({"command": "stop", "fast": fast, "wait": wait is not None}).encode() + b"\n")
        reply = read_reply(sock, path)
        if wait is not None:
            deadline = time.monotonic() + wait
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    if not sock.recv(4096):
                        break
                except TimeoutError:
                    raise SupervisorError(
                        f"master pid {reply.get('pid')} is still stopping after {wait:g} s"
                    ) from None
                except OSError:
                    break
    finally:
        sock.close()
    return reply


# -- showing a status ------------------------------------------------------------


def age(seconds: float, tenths: bool = True) -> str:
    """1.5s (with ``tenths``, below 10 s), 12s, 5m03s, 2h04m, 3d05h."""
    if tenths and seconds < 10:
        return f"{seconds:.1f}s"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _pool(row: dict[str, Any]) -> str:
    pools = row.get("pool")
    if not isinstance(pools, dict) or not pools:
        return "-"
    parts = []
    for name, p in pools.items():
        size, idle, waiting, most = (
            p.get(k, 0) for k in ("pool_size", "pool_available", "requests_waiting", "pool_max")
        )
        label = "" if name == "db" else f"{name}: "
        parts.append(f"{label}{size}/{most} ({idle} idle, {waiting} waiting)")
    return "; ".join(parts) + f" [{age(row.get('pool_age_s', 0))} ago]"


def _ended_early(row: dict[str, Any]) -> str:
    """What the worker did not serve to the end: refused (503), past the
    deadline (504), the client gone; '-' when nothing."""
    load = row.get("load")
    if not isinstance(load, dict):
        return "-"
    parts = [
        f"{label} {n}"
        for label, n in (
            ("shed", load.get("shed", 0)),
            ("timed out", load.get("expired", 0)),
            ("left", load.get("left_queued", 0) + load.get("left_running", 0)),
            ("cancelled", load.get("cancelled", 0)),
        )
        if n
    ]
    flag = "OVERLOADED " if load.get("overloaded") else ""
    return flag + (", ".join(parts) or ("-" if not flag else ""))


def render_status(data: dict[str, Any]) -> list[str]:
    """The lines ``supervise status`` prints for one master."""
    m = data["master"]
    state = "stopping" if m.get("stopping") else "reloading" if m.get("reloading") else "running"
    lines = [
        f"master {m['pid']}  {m.get('target') or '-'}  {state}  up {age(m['uptime_s'])}  "
        f"workers {m['workers_ready']}/{m['workers']} ready  migrations: {m.get('migrations')}",
    ]
    if m.get("listening"):
        lines.append("listening " + ", ".join(m["listening"]))
    if m.get("workers_overloaded"):
        lines.append(
            f"overloaded: {m['workers_overloaded']} of {m['workers_ready']} workers refuse work past "
            "capacity (503); see docs/overload.md"
        )
    header = ("worker", "pid", "state", "age", "heartbeat", "work", "crashes", "ended early", "pool")
    rows = [
        (
            str(r["worker"]),
            str(r["worker_pid"]),
            r["state"],
            age(r["age_s"]),
            age(r["heartbeat_age_s"]),
            str(r["work"]),
            str(r["crashes_in_a_row"]),
            _ended_early(r),
            _pool(r),
        )
        for r in data["workers"]
    ]
    widths = [max(len(c[i]) for c in [header, *rows]) for i in range(len(header) - 1)]
    for cells in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[-1])
    return lines
