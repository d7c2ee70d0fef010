"""The master's steps before the first fork, in the order a failure is cheapest.

Everything that can fail without the database comes first (the target, the
sockets, the health endpoint), so a typo never migrates anything; the database
steps (preflight.py) come last, right before the first fork. A stop signal
raises :class:`Interrupted` out of any wait here.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from supervisor.errors import SupervisorError, TargetError
from supervisor.logging import get_logger
from supervisor.master import status
from supervisor.master.handle import WorkerHandle
from supervisor.master.refork import preloads_in_mold
from supervisor.master.started import Started
from supervisor.shared import channel, proctitle, reexec, signals
from supervisor.target import Kind, check_importable, resolve
from supervisor.worker import runners

if TYPE_CHECKING:
    from supervisor.control.health import HealthServer
    from supervisor.master.view import MasterView
    from supervisor.settings.config import Config

log = get_logger()


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived before any worker was forked. A KeyboardInterrupt,
    so that psycopg cancels a running statement (a migration) on the server
    instead of leaving it running, and ``except Exception`` in user code
    running during start-up (an import, a hook) does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signal_name = signal.Signals(signum).name


def interrupt(signum: int, frame: object) -> None:
    """The stop signals' handler until the loop runs."""
    # One shot: a second Ctrl-C while start-up unwinds is only recorded.
    for sig in signals.STOP:
        signal.signal(sig, lambda *_: None)
    raise Interrupted(signum)


def start(m: MasterView) -> Started:
    """Check, bind, migrate: all that must hold before the first fork. A failure
    here forks nothing (a probe child aside), closes what it had opened, and
    leaves the database untouched unless it is the database's own."""
    cfg = m.config
    proctitle.set_title(f"master {cfg.target}")
    log.info("starting", target=cfg.target, workers=cfg.workers, preload=cfg.preload, timeout_s=cfg.timeout)
    out = Started(target=m.target)
    with contextlib.ExitStack() as undo:
        if cfg.pid:
            from supervisor.control.pidfile import PidFile

            pidfile = PidFile(cfg.pid)
            pidfile.acquire()
            undo.callback(pidfile.release)
        if m.target is None:
            check_importable(cfg.target)  # cheap: a missing module fails before any import
        from supervisor.http import engines, sockets

        sockets.validate(cfg)
        engines.check(cfg)  # TLS files, proxy addresses: before any database step
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from supervisor.integrations import prometheus

            # before any hook or import: prometheus_client picks its storage on import
            out.metrics = prometheus.enable(
                m.hooks, fresh=reexec.received() is None, workers=lambda: status.workers(m, m.clock())
            )
        m.hooks.run("on_starting", m.info())
        # (--preload's import never had --boot-timeout: neither has this probe)
        probed = probe_kind(cfg, patient=True) if out.target is None and preloads_in_mold(cfg) else None
        # an app server is preloaded in a mold that the workers are forked from, never
        # here (refork.preloads_in_mold), if this master can adopt what the mold forks;
        # a main(worker) target serves no requests to refork
        out.mold_preloads = probed is not None and runners.listens(probed) and m.procs.adopt_orphans()
        if cfg.preload and out.target is None and not out.mold_preloads:
            out.target = resolve(cfg.target, cfg.interface, cfg.factory)
            log.info("target preloaded", kind=out.target.kind.value)
        kind = out.target.kind if out.target is not None else (probed or probe_kind(cfg))
        _open_listeners(out, cfg, kind, m.clock(), warm=not out.mold_preloads)
        if out.listeners:
            undo.callback(sockets.close, out.listeners, unlink=True)
        if cfg.health_bind:
            out.health = _open_health(m, cfg.health_bind, out.metrics)
            undo.callback(out.health.close)
        from supervisor.master import commands

        out.control = commands.open_control(m)  # before the database steps: status answers after them
        if out.control is not None:
            undo.callback(out.control.close)
        if cfg.database_url:
            from supervisor.database import preflight

            out.budget, out.migrations = preflight.run(
                cfg,
                cfg.workers,
                before_migrate=lambda: m.hooks.run("before_migrate", m.info()),
                after_migrate=lambda: m.hooks.run("after_migrate", m.info()),
            )
            if out.budget.member is not None:
                undo.callback(out.budget.member.leave)  # a failure after this gives the room back
            from supervisor.migrate.contract import Contracts

            out.contracts = Contracts.of(cfg)
        from supervisor.master import reloader

        undo.callback(reloader.stop)
        if cfg.reload:
            log.info(
                "watching for changes (--reload)", dirs=reloader.start(cfg), include=list(cfg.reload_include)
            )
        out.closing = undo.pop_all()
    return out


def _open_listeners(out: Started, cfg: Config, kind: Kind, now: float, warm: bool) -> None:
    """Take the sockets a previous image handed over, or bind the configured
    ones when the target serves HTTP (or --bind / --interface ask for it).
    ``warm``: import the HTTP server here (not when a mold preloads the app)."""
    from supervisor.http import engines, sockets

    handover = reexec.received()
    if handover is not None:
        _adopt(out, handover, now)
    elif cfg.bind or cfg.interface in ("asgi", "wsgi") or runners.listens(kind):
        out.listeners = sockets.bind(cfg)
    if out.listeners:
        log.info("listening", on=[sockets.describe(lsn, bool(cfg.ssl_certfile)) for lsn in out.listeners])
        # Import the server once here: every fork then starts with it loaded
        # (about 100 ms saved per worker boot and replacement; see uvicorn_engine.warm).
        if warm:
            engines.warm(cfg.http, kind)


def _adopt(out: Started, handover: reexec.Handover, now: float) -> None:
    """After a re-exec: the previous image's sockets, and its workers as handles
    that serve until this image's workers are ready (rolling.retire_adopted)."""
    import socket as socketlib

    from supervisor.http.sockets import Listener

    out.listeners = [
        Listener(address, socketlib.socket(fileno=fd), path) for fd, address, path in handover.listeners
    ]
    out.adopted = [
        WorkerHandle(
            old.slot,
            old.pid,
            channel.Heartbeat.none(),
            -1,
            now,
            old.command_fd,
            adopted=True,
            ready_at=now,
            stop_reason="reload (previous image)",  # it is being replaced from the start
        )
        for old in handover.workers
    ]
    out.old_lifelines = handover.lifelines
    log.info("re-executed with new code", adopted_workers=len(out.adopted), listeners=len(out.listeners))


def probe_kind(cfg: Config, patient: bool = False) -> Kind:
    """Import the target in a throwaway child and report its kind, so that an
    import error, a misspelt attribute or a target of no known kind stops the
    start before the database is touched, and the master learns whether to
    bind sockets, without importing the app itself (which stays lazy).
    ``patient``: up to an hour rather than --boot-timeout (a --preload import,
    which the master once ran itself, never had one)."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the probe: never returns into the master's code
        try:
            signal.set_wakeup_fd(-1)
            for sig in signals.MASTER:
                signal.signal(sig, signal.SIG_DFL)
            try:
                message = "ok " + resolve(cfg.target, cfg.interface, cfg.factory).kind.value
            except SupervisorError as exc:
                message = "error " + str(exc)
            except BaseException as exc:  # SystemExit from argparse at import, say
                message = f"error importing {cfg.target!r} raised {type(exc).__name__}: {exc}"
            os.write(write_fd, (message.replace("\n", " ")[:60000] + "\n").encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks: list[bytes] = []
    try:
        deadline = time.monotonic() + (3600 if patient else cfg.boot_timeout or 3600)
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TargetError(
                    f"importing {cfg.target!r} took longer than --boot-timeout ({cfg.boot_timeout:g} s)"
                )
            chunk = os.read(read_fd, 65536)
            chunks.append(chunk)
            # one line is the whole answer: don't wait for an end-of-file that a
            # process the import forked (still holding the pipe) would delay
            if not chunk or b"\n" in chunk:
                break
    finally:
        os.close(read_fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    status, _, text = b"".join(chunks).decode("utf-8", "replace").strip().partition(" ")
    if status != "ok":
        raise TargetError(text or f"importing {cfg.target!r} failed")
    return Kind(text)


def _open_health(
    m: MasterView, address: str, metrics: Callable[[], tuple[bytes, str]] | None
) -> HealthServer:
    from supervisor.control.health import HealthServer
    from supervisor.http import sockets

    listener = sockets.health(address)
    server = HealthServer(listener.sock, lambda: status.health(m), m.wakeup.selector, metrics)
    log.info("health endpoint", on=sockets.describe(listener) + "/readyz")
    return server
