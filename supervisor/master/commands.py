"""What the master does when asked: the signals it handles, and the commands
it answers on its control socket (``control/server.py`` serves it):
``status``, ``reload``, ``scale``, ``stop``. A command takes the same path as
its signal (HUP, TTIN/TTOU, TERM/QUIT), so the two cannot behave differently;
what a signal can only log, a command also answers.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

from supervisor import _clash
from supervisor.control.server import Reply
from supervisor.logging import get_logger
from supervisor.master import status
from supervisor.master.handle import StopMode

if TYPE_CHECKING:
    from supervisor.control.server import ControlServer
    from supervisor.master.view import MasterView

log = get_logger()


def on_signal(m: MasterView, signum: int, now: float) -> None:
    if signum in (signal.SIGTERM, signal.SIGINT):
        m.user_stop(f"{signal.Signals(signum).name} received")
    elif signum == signal.SIGQUIT:
        m.begin_stop(StopMode.FAST, "SIGQUIT received")
    elif signum == signal.SIGHUP:
        m.request_reload(now)
    elif signum == signal.SIGTTIN:
        m.scale(m.config.workers + 1)
    elif signum == signal.SIGTTOU:
        if m.config.workers <= 1:
            log.warning("TTOU ignored: already at one worker")
        else:
            m.scale(m.config.workers - 1)
    elif signum == signal.SIGUSR2:
        # gunicorn's binary upgrade; a gunicorn habit must not kill the service
        log.warning(
            "USR2 ignored: there is no binary upgrade here; HUP reloads workers with new code "
            "(with --preload the master re-executes itself, keeping its pid and sockets)"
        )
    elif signum == signal.SIGUSR1:
        status.log_workers(m, now)
        for handle in m.children.values():  # each adds what only it knows (pool stats)
            m.procs.signal(handle.pid, signal.SIGUSR1)


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
    from supervisor.http import sockets

    return {
        "master": {
            "pid": os.getpid(),
            "version": _clash.own_version(),
            "target": m.config.target,
            "uptime_s": round(now - m.started_at, 3),
            "listening": [
                sockets.describe(listener, bool(m.config.ssl_certfile)) for listener in m.started.listeners
            ],
            **status.health(m),
        },
        "workers": rows,
    }


def _reload(m: MasterView) -> Reply:
    if m.stopping:
        return Reply({"ok": False, "error": "the master is stopping"})
    now = m.clock()
    if m.reloading or m.replacing():
        # the HUP path queues it; say so rather than pretend it started
        return Reply({"ok": True, "queued": True}, then=lambda: m.request_reload(now))
    # Answered before acting: with --preload the reload re-executes the master,
    # which closes this connection; the reply is already in the socket by then.
    return Reply(
        {"ok": True, "queued": False, "workers": m.ready_count()},
        then=lambda: m.request_reload(m.clock()),
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


def open_control(m: MasterView) -> ControlServer | None:
    """Serve the control socket, unless --control-socket none. A default path
    that cannot be made is a warning (the master runs without it); a path the
    user chose that cannot be used is an error."""
    from supervisor.control import paths
    from supervisor.control.server import ControlServer, bind
    from supervisor.errors import ConfigError

    try:
        path = paths.socket_path(m.config)
        if path is None:
            return None
        sock = bind(path)
    except ConfigError as exc:
        if m.config.control_socket or m.config.pid:
            raise
        log.warning(
            "no control socket: supervise status/reload/scale/stop will not reach this master",
            error=str(exc),
            fix="give each master started in one directory its own --pid FILE or --control-socket PATH",
        )
        return None
    server = ControlServer(sock, path, lambda request: dispatch(m, request), m.wakeup.selector)
    server.alias = paths.link_default(path)
    log.info("control socket", on=str(path))
    return server
