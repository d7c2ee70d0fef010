"""What the master answers on its control socket (master/control.py serves it):
``status``, ``reload``, ``scale``, ``stop``. Each acts through the same paths
as the signals (HUP, TTIN/TTOU, TERM/QUIT), so a command and a signal cannot
behave differently; what a signal can only log, a command also answers.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from supervisor import _clash
from supervisor.logging import get_logger
from supervisor.master import status
from supervisor.master.control import Reply
from supervisor.master.handle import StopMode
from supervisor.master.view import MasterView

if TYPE_CHECKING:
    from supervisor.master.handle import WorkerHandle

log = get_logger()


def dispatch(m: MasterView, request: dict[str, Any]) -> Reply:
    command = request.get("command")
    log.info("control command", command=command)
    if command == "status":
        return Reply({"ok": True, **snapshot(m)})
    if command == "reload":
        return _reload(m)
    if command == "scale":
        return _scale(m, request.get("workers"))
    if command == "stop":
        mode = StopMode.FAST if request.get("fast") else StopMode.GRACEFUL
        reason = f"supervise stop{' --fast' if mode is StopMode.FAST else ''}"
        return Reply(
            {"ok": True, "pid": os.getpid(), "workers": len(m.children)},
            then=lambda: m.begin_stop(mode, reason),
            hold=bool(request.get("wait")),
        )
    return Reply({"ok": False, "error": f"unknown command {command!r}"})


def snapshot(m: MasterView) -> dict[str, Any]:
    """What ``supervise status`` shows: the master, then one row per worker."""
    now = m.clock()
    rows = status.workers(m, now)
    by_pid = {h.pid: h for h in m.children.values()}
    for row in rows:
        handle = by_pid.get(row["worker_pid"])
        if handle is not None and handle.pool is not None:
            row["pool"] = handle.pool
            row["pool_age_s"] = round(now - handle.pool_at, 3)
    from supervisor import sockets

    return {
        "master": {
            "pid": os.getpid(),
            "version": _clash.own_version(),
            "target": m.config.target,
            "uptime_s": round(now - m.started_at, 3),
            "listening": [sockets.describe(listener) for listener in m.listeners],
            **status.health(m),
        },
        "workers": rows,
    }


def _reload(m: MasterView) -> Reply:
    if m.stopping:
        return Reply({"ok": False, "error": "the master is stopping"})
    now = m.clock()
    if m.rollout.reloading or m.rollout.busy():
        # the HUP path queues it; say so rather than pretend it started
        return Reply({"ok": True, "queued": True}, then=lambda: m.rollout.request_reload(now))
    # Answered before acting: with --preload the reload re-executes the master,
    # which closes this connection; the reply is already in the socket by then.
    return Reply(
        {"ok": True, "queued": False, "workers": m.ready_count()},
        then=lambda: m.rollout.request_reload(m.clock()),
    )


def _scale(m: MasterView, workers: object) -> Reply:
    current = m.config.workers
    if isinstance(workers, str) and workers[:1] in "+-" and workers[1:].isdigit():
        workers = current + int(workers)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        error = f"scale: expected a number of workers of at least 1, got {workers!r}"
        return Reply({"ok": False, "error": error})
    refused = m.scale(workers)
    if refused is not None:
        return Reply({"ok": False, "error": f"scale to {workers} refused: {refused}"})
    return Reply({"ok": True, "workers_from": current, "workers_to": workers})


def pool_report(handle: WorkerHandle, text: str, now: float) -> None:
    """A worker's ``pool`` line: kept for the next status."""
    try:
        pools = json.loads(text)
    except ValueError:
        return
    if isinstance(pools, dict):
        handle.pool, handle.pool_at = pools, now


def open_control(m: MasterView) -> None:
    """Serve the control socket, unless --control-socket none. A default path
    that cannot be made is a warning (the master runs without it); a path the
    user chose that cannot be used is an error."""
    from supervisor import control_path
    from supervisor.errors import ConfigError
    from supervisor.master.control import ControlServer, bind

    try:
        path = control_path.socket_path(m.config)
        if path is None:
            return
        sock = bind(path)
    except ConfigError as exc:
        if m.config.control_socket or m.config.pid:
            raise
        log.warning(
            "no control socket: supervise status/reload/scale/stop will not reach this master", error=str(exc)
        )
        return
    m.control = ControlServer(sock, path, lambda request: dispatch(m, request), m.wakeup.selector)
    m.control.alias = control_path.link_default(path)
    log.info("control socket", on=str(path))
