"""The master: one single-threaded loop that owns every decision.

Signal handlers do nothing in Python; ``signal.set_wakeup_fd`` writes each
signal's number into a pipe at C level, and the loop reads those bytes as its
signal queue. The loop sleeps in ``select`` on that pipe and on each worker's
report pipe until the earliest deadline (boot, heartbeat, kill, backoff), so
a death is reaped the moment SIGCHLD arrives and an idle master does not poll.

Decisions are methods that take ``now`` and talk to processes only through
:class:`Processes`, so tests drive them without forking.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from supervisor import _channel, _proctitle, _signals, forksafety, systemd
from supervisor.config import MAX_WORKERS, Config
from supervisor.context import MasterInfo, WorkerInfo, describe_exit
from supervisor.crashes import CrashPolicy
from supervisor.errors import (
    ConfigError,
    CrashLoopError,
    ExitCode,
    HookError,
    SupervisorError,
    TargetError,
    WorkerBootError,
)
from supervisor.health import Client as HealthClient
from supervisor.hooks import Hooks
from supervisor.logging import get_logger
from supervisor.target import Kind, Target, check_importable, resolve
from supervisor.worker import DUMP_SIGNAL, WorkerSpec, run_worker

if TYPE_CHECKING:
    from supervisor import _reexec
    from supervisor.database import Database
    from supervisor.health import HealthServer
    from supervisor.sockets import Listener

log = get_logger()

HANDLED = _signals.MASTER
FAST_GRACE = 1.0  # seconds a worker gets after QUIT before SIGKILL
ABORT_GRACE = 1.0  # seconds between the stack-dump signal and SIGKILL
KILL_MARGIN = 1.0  # past --graceful-timeout: the worker exits itself first, then we KILL


@dataclass(eq=False)
class Child:
    """A forked worker process, as the master tracks it."""

    slot: int
    pid: int
    heartbeat: _channel.Heartbeat
    report_fd: int
    spawned_at: float
    ready_at: float | None = None
    stop_reason: str | None = None  # set when the master asked it to stop
    failure: str | None = None  # set when the master killed it for misbehaving
    kill_at: float | None = None
    error: tuple[int, str] | None = None  # what it reported before exiting
    replacing: Child | None = None  # rolling replacement: the worker it will replace
    replace_reason: str = "reload"
    reader: _channel.LineReader = field(default_factory=_channel.LineReader)

    @property
    def state(self) -> str:
        if self.stop_reason or self.failure:
            return "stopping"
        return "ready" if self.ready_at is not None else "booting"


@dataclass(eq=False)
class Slot:
    """Worker id ``id``: at most one active worker, plus a reload replacement."""

    id: int
    child: Child | None = None
    pending: Child | None = None
    streak: int = 0
    spawn_at: float = 0.0
    waited: float = 0.0  # the backoff its next spawn waited, for the log
    finished: bool = False  # its main returned: not refilled


class Processes(Protocol):
    def spawn(self, master: Master, slot: int) -> tuple[int, int, _channel.Heartbeat]:
        """Fork worker ``slot``: (pid, report pipe read end, heartbeat)."""

    def signal(self, pid: int, sig: int) -> None: ...

    def retire(self, pid: int) -> None:
        """Ask a worker to finish politely and exit (it is being replaced)."""

    def reap(self) -> list[tuple[int, int]]:
        """Exited children: (pid, exit code or -signal number)."""


class Master:
    def __init__(
        self,
        config: Config,
        hooks: Hooks,
        *,
        target: Target | None = None,
        reload_config: Callable[[], Config] | None = None,
        database: Database | None = None,
        processes: Processes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.hooks = hooks
        self.target = target
        self._reload_config = reload_config
        self.database = database
        self.listeners: list[Listener] = []
        # after a --preload re-exec: the previous image's workers and lifeline
        self._adopted: dict[int, _reexec.Adopted] = {}
        self._old_lifelines: list[int] = []
        self.health: HealthServer | None = None
        self._metrics: Callable[[], tuple[bytes, str]] | None = None  # /metrics, when enabled
        self.migrations = "none"  # for /readyz: none, skipped, up to date, applied N
        self._budget: tuple[int, str] | None = None  # (connection limit, how it was worked out)
        self._procs: Processes = processes or _Forker()
        self._clock = clock
        self.slots: dict[int, Slot] = {}
        self.children: dict[int, Child] = {}
        self.stopping: str | None = None  # "graceful" or "fast"
        self.error: SupervisorError | None = None
        self.booted = False
        self.started_at = clock()
        self._reload_queue: list[int] = []
        self._reloading = False  # from HUP until no slot is left to roll and none is pending
        self._recycle_queue: list[tuple[int, str]] = []  # (pid, reason), waiting their turn
        self._reload_again = False
        self._signalled_stop = False
        self._watchdog = systemd.watchdog_interval()
        self._next_watchdog = 0.0
        self._policy = CrashPolicy(config.crash_limit, config.crash_reset)
        # set up by run(); absent in unit tests
        self._selector: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = self._life_r = self._life_w = -1
        self._old_handlers: dict[int, object] = {}
        self._old_wakeup = -1

    # -- views for hooks and logs --------------------------------------------

    def info(self, exit_code: int | None = None) -> MasterInfo:
        workers = tuple(
            WorkerInfo(c.slot, c.pid) for c in sorted(self.children.values(), key=lambda c: (c.slot, c.pid))
        )
        return MasterInfo(pid=os.getpid(), config=self.config, workers=workers, exit_code=exit_code)

    # -- running ----------------------------------------------------------------

    def run(self) -> None:
        """Start, supervise until stopped, clean up. Raises the error that ended
        the run (boot failure, crash loop, bad target...) after ``on_exit``."""
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("the supervisor must run in the main thread (it handles signals)")
        try:
            try:
                self._open()
                self.start()
                self._arm_signals()
            except _StartInterrupted as stop:
                log.info("stopped before any worker started", signal=stop.signal_name)
            except SupervisorError as exc:
                self.error = exc
            else:
                self._wait(0)  # a signal that arrived during start-up counts before any fork
                self._loop()
        finally:
            self._close()
        if self.error is not None:
            raise self.error

    def start(self) -> None:
        """The phases before the first fork. A failure here forks nothing.

        Order (DESIGN.md): check the target -> on_starting -> database (wait,
        budget, migrate) -> preload. A stop signal raises out of any wait here.
        """
        cfg = self.config
        log.info(
            "starting", target=cfg.target, workers=cfg.workers, preload=cfg.preload, timeout_s=cfg.timeout
        )
        if self.target is None:
            check_importable(cfg.target)  # a typo must not migrate the database first
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from supervisor import _reexec
            from supervisor.integrations import prometheus

            # before any hook or import: prometheus_client picks its storage on import
            self._metrics = prometheus.enable(self.hooks, fresh=_reexec.received() is None)
        self.hooks.run("on_starting", self.info())
        if cfg.database_url:
            self._database_phases()
        if cfg.preload and self.target is None:
            self.target = resolve(cfg.target, cfg.interface, cfg.factory)
            log.info("target preloaded", kind=self.target.kind.value)
        if self._budget is not None and cfg.preload:
            # preloaded code may declare more Database objects: count their pools too
            from supervisor import database as dbmod

            dbmod.check_budget(cfg.workers, self._per_worker(), *self._budget)
        kind = self.target.kind if self.target is not None else None
        if kind is None and cfg.interface == "auto" and not cfg.bind:
            kind = self._probe_kind()  # must we listen? only the target can say
        self._open_listeners(kind)
        if cfg.health_bind:
            self._open_health(cfg.health_bind)
        self.started_at = self._clock()
        for slot_id in range(1, cfg.workers + 1):
            self.slots[slot_id] = Slot(slot_id)

    def _open_listeners(self, kind: Kind | None) -> None:
        """Take the sockets a previous image handed over, or bind the configured
        ones when the target serves HTTP (or --bind / --interface ask for it)."""
        from supervisor import _reexec, sockets

        cfg = self.config
        handover = _reexec.received()
        if handover is not None:
            self._adopt(handover)
        elif cfg.bind or cfg.interface in ("asgi", "wsgi") or kind in (Kind.ASGI, Kind.WSGI):
            self.listeners = sockets.bind(cfg)
        if self.listeners:
            log.info("listening", on=[sockets.describe(listener) for listener in self.listeners])
            # Import the server once here: every fork then starts with it loaded
            # (about 100 ms saved per worker boot and replacement).
            import uvicorn  # noqa: F401

    def _adopt(self, handover: _reexec.Handover) -> None:
        import socket as socketlib

        from supervisor.sockets import Listener

        self.listeners = [
            Listener(address, socketlib.socket(fileno=fd), path) for fd, address, path in handover.listeners
        ]
        self._adopted = {w.pid: w for w in handover.workers}
        self._old_lifelines = handover.lifelines
        log.info(
            "re-executed with new code", adopted_workers=len(self._adopted), listeners=len(self.listeners)
        )

    def _probe_kind(self) -> Kind:
        """Import the target in a throwaway child and report its kind, so the
        master learns whether to bind sockets without importing the app itself
        (which stays lazy). An import error surfaces here, before any worker."""
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the probe: never returns into the master's code
            try:
                signal.set_wakeup_fd(-1)
                for sig in HANDLED:
                    signal.signal(sig, signal.SIG_DFL)
                try:
                    message = (
                        "ok "
                        + resolve(self.config.target, self.config.interface, self.config.factory).kind.value
                    )
                except SupervisorError as exc:
                    message = "error " + str(exc)
                except BaseException as exc:  # SystemExit from argparse at import, say
                    message = f"error importing {self.config.target!r} raised {type(exc).__name__}: {exc}"
                os.write(write_fd, (message.replace("\n", " ")[:60000] + "\n").encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        chunks: list[bytes] = []
        try:
            deadline = time.monotonic() + (self.config.boot_timeout or 3600)
            while True:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([read_fd], [], [], max(left, 0))
                if not ready:
                    raise TargetError(
                        f"importing {self.config.target!r} took longer than "
                        f"--boot-timeout ({self.config.boot_timeout:g} s)"
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
            raise TargetError(text or f"importing {self.config.target!r} failed")
        return Kind(text)

    def _open_health(self, address: str) -> None:
        from supervisor import sockets
        from supervisor.health import HealthServer

        listener = sockets._tcp(address, 64)
        self.health = HealthServer(listener.sock, self.health_state, self._selector, self._metrics)
        log.info("health endpoint", on=sockets.describe(listener) + "/readyz")

    def ready_count(self) -> int:
        """Slots whose current worker is serving (a pending replacement does not count)."""
        return sum(1 for s in self.slots.values() if s.child is not None and s.child.ready_at is not None)

    def health_state(self) -> dict[str, object]:
        ready = self.ready_count()
        return {
            "ready": self.booted and not self.stopping and ready > 0,
            "workers_ready": ready,
            "workers": self.config.workers,
            "reloading": self._reloading,
            "stopping": bool(self.stopping),
            "migrations": self.migrations,
        }

    def _database_phases(self) -> None:
        """Wait for the server, check the connection budget, migrate once."""
        # imported here: a supervisor without a database never loads psycopg
        from supervisor import database as dbmod
        from supervisor import migrate

        cfg = self.config
        with dbmod.wait_for_server(cfg) as conn:
            self._budget = dbmod.connection_budget(conn, cfg)
        dbmod.check_budget(cfg.workers, self._per_worker(), *self._budget)
        if cfg.migrations and cfg.migrate:
            self.hooks.run("before_migrate", self.info())
            applied = migrate.run(cfg)
            log.info("migrations done", applied=len(applied))
            self.migrations = f"applied {len(applied)}" if applied else "up to date"
            self.hooks.run("after_migrate", self.info())
        elif cfg.migrations:
            self.migrations = "skipped (--no-migrate)"

    def _per_worker(self) -> int:
        from supervisor.database import per_worker_connections

        return per_worker_connections(self.config)

    def _loop(self) -> None:
        while True:
            self.tick(self._clock())
            if self.stopping and not self.children and not self._adopted:
                return
            self._wait(self.next_wakeup(self._clock()))

    def _wait(self, timeout: float | None) -> None:
        assert self._selector is not None
        events = self._selector.select(timeout)
        # Drain the wake-up pipe before reaping, never after: a SIGCHLD that
        # lands between a reap and the drain would lose its byte, and a child
        # that died then would wait for the next deadline to be noticed.
        signals = b""
        if any(key.fd == self._wake_r for key, _ in events):
            with contextlib.suppress(BlockingIOError):
                signals = os.read(self._wake_r, 256)
        # Reap next: a worker that said "ready" and died in the same instant
        # must be judged by its death, its last words read as such.
        self._reap()
        for signum in signals:
            self.on_signal(signum, self._clock())
        for key, _ in events:
            if key.fd == self._wake_r:
                continue
            elif self.health is not None and key.data is self.health:
                self.health.accept()
            elif isinstance(key.data, Child):
                if key.data.pid in self.children and key.data.report_fd == key.fd:
                    self._read_reports(key.data)
            elif self.health is not None and isinstance(key.data, HealthClient):
                self.health.read(key.data)

    def _read_reports(self, child: Child, alive: bool = True) -> None:
        while True:
            try:
                data = os.read(child.report_fd, 4096)
            except (BlockingIOError, OSError):
                return
            if not data:
                self._unregister(child)
                return
            for line in child.reader.feed(data):
                self.on_message(child.pid, line, self._clock(), alive)

    def _reap(self) -> None:
        for pid, code in self._procs.reap():
            child = self.children.get(pid)
            if child is not None and child.report_fd >= 0:
                self._read_reports(child, alive=False)  # what it said before dying comes first
            self.on_exit(pid, code, self._clock())

    # -- decisions ------------------------------------------------------------

    def on_signal(self, signum: int, now: float) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            name = signal.Signals(signum).name
            # Only a user's second stop escalates, not the first one after a
            # stop the supervisor began itself (boot failure, all finished).
            mode = "fast" if self._signalled_stop else "graceful"
            self._signalled_stop = True
            self.begin_stop(mode, f"{name} received")
        elif signum == signal.SIGQUIT:
            self.begin_stop("fast", "SIGQUIT received")
        elif signum == signal.SIGHUP:
            self.request_reload(now)
        elif signum == signal.SIGTTIN:
            self.scale(self.config.workers + 1)
        elif signum == signal.SIGTTOU:
            if self.config.workers <= 1:
                log.warning("TTOU ignored: already at one worker")
            else:
                self.scale(self.config.workers - 1)
        elif signum == signal.SIGUSR2:
            # gunicorn's binary upgrade; a gunicorn habit must not kill the service
            log.warning(
                "USR2 ignored: there is no binary upgrade here; HUP reloads workers with new code "
                "(with --preload the master re-executes itself, keeping its pid and sockets)"
            )
        elif signum == signal.SIGUSR1:
            self.log_status(now)
            for child in self.children.values():  # each adds what only it knows (pool stats)
                self._procs.signal(child.pid, signal.SIGUSR1)

    def on_message(self, pid: int, line: str, now: float, alive: bool = True) -> None:
        """One line from a worker. ``alive=False``: its last words, read after it
        died; a 'ready' then only marks it as having booted (no promotion)."""
        child = self.children.get(pid)
        if child is None:
            return
        kind, _, text = line.partition(" ")
        if kind == _channel.ERROR:
            child.error = _channel.parse_error(text)
        elif kind == _channel.READY and child.ready_at is None:
            if child.failure or child.stop_reason:
                pass  # too late: the master already gave up on it or asked it to stop
            elif not alive:
                child.ready_at = now  # it did boot (so its death is a crash), but it is gone
            else:
                self._on_ready(child, now)
        elif kind == _channel.RECYCLE:
            self.recycle(child, text or "asked by the worker", now)

    def recycle(self, child: Child, reason: str, now: float) -> None:
        """Replace one worker through the rolling path: its successor must be
        ready before it is asked to stop."""
        slot = self.slots.get(child.slot)
        if self.stopping or slot is None or slot.child is not child or child.stop_reason or child.failure:
            return
        if self._reloading or any(s.pending for s in self.slots.values()):
            # one replacement at a time: capacity never drops by more than one worker
            if all(pid != child.pid for pid, _ in self._recycle_queue):
                self._recycle_queue.append((child.pid, reason))
            return
        log.info("recycling worker", worker=child.slot, worker_pid=child.pid, reason=reason)
        slot.pending = self._spawn(slot, now, replacing=child, reason=f"recycled: {reason}")

    def _on_ready(self, child: Child, now: float) -> None:
        child.ready_at = now
        slot = self.slots.get(child.slot)
        log.info(
            "worker ready", worker=child.slot, worker_pid=child.pid, boot_s=round(now - child.spawned_at, 4)
        )
        if slot is None:
            return
        if child.replacing is not None and slot.pending is child:
            old, reason = child.replacing, child.replace_reason
            slot.child, slot.pending, child.replacing = child, None, None
            if old.pid in self.children:
                self.retire(old, reason, now)
        self._check_booted(now)

    def _check_booted(self, now: float) -> None:
        if not self.booted and all(
            s.finished or (s.child and s.child.ready_at is not None) for s in self.slots.values()
        ):
            self.booted = True
            systemd.notify("READY=1", f"STATUS={len(self.slots)} workers ready")
            self._retire_adopted(now)
            log.info("all workers ready", workers=len(self.slots), elapsed_s=round(now - self.started_at, 4))
            for failure in self.hooks.run_all("when_ready", self.info()):
                log.error("hook failed", hook=failure.hook, exc_info=failure.original)

    def on_exit(self, pid: int, code: int, now: float) -> None:
        old = self._adopted.pop(pid, None)
        if old is not None:
            os.close(old.command_fd)
            log.info(
                "worker exited",
                worker=old.slot,
                worker_pid=pid,
                reason="reload (previous image)",
                status=describe_exit(code if code >= 0 else None, -code if code < 0 else None),
            )
            if not self._adopted:
                for fd in self._old_lifelines:
                    os.close(fd)
                self._old_lifelines = []
            return
        child = self.children.pop(pid, None)
        if child is None:
            return  # not ours (we may be PID 1 and inherit orphans)
        self._unregister(child)
        child.heartbeat.close()
        sig = -code if code < 0 else None
        exit_code = code if code >= 0 else None
        desc = describe_exit(exit_code, sig)
        slot = self.slots.get(child.slot)
        if slot is not None and slot.child is child:
            slot.child = None
        if slot is not None and slot.pending is child:
            slot.pending = None
        info = WorkerInfo(child.slot, child.pid, exit_code, sig, child.stop_reason or child.failure)
        for failure in self.hooks.run_all("child_exit", info):
            log.error("hook failed", hook=failure.hook, exc_info=failure.original)

        if child.stop_reason is not None and child.failure is None:
            log.info(
                "worker exited", worker=child.slot, worker_pid=pid, reason=child.stop_reason, status=desc
            )
            return
        if self.stopping:
            log.info("worker exited", worker=child.slot, worker_pid=pid, status=desc)
            return
        if child.replacing is not None:
            reason = child.failure or (child.error[1] if child.error else desc)
            if child.replace_reason != "reload":
                log.error(
                    "replacement failed to boot; the running worker is kept",
                    worker=child.slot,
                    worker_pid=pid,
                    error=reason,
                )
                return
            log.error(
                "reload aborted: new worker failed to boot; the running workers are kept",
                worker=child.slot,
                worker_pid=pid,
                error=reason,
            )
            self._reload_failed()
            return
        if child.ready_at is None:
            self._boot_failed(child, slot, desc, now)
            return
        if exit_code == 0 and child.failure is None:
            log.info("worker finished: main returned", worker=child.slot, worker_pid=pid)
            if slot is not None:
                slot.finished = True
            if self.slots and all(s.finished for s in self.slots.values()):
                log.info("every worker finished")
                self.begin_stop("graceful", "every worker finished")
            return
        self._crashed(child, slot, child.failure or desc, now - child.ready_at, now)

    def _boot_failed(self, child: Child, slot: Slot | None, desc: str, now: float) -> None:
        if child.error is not None:
            code, message = child.error
        else:
            code, message = (
                ExitCode.BOOT_FAILED,
                (f"worker {child.slot} {child.failure or desc} before it was ready"),
            )
        if not self.booted:
            error: SupervisorError = (
                TargetError(message) if code == ExitCode.TARGET else WorkerBootError(message)
            )
            log.error(
                "worker failed to boot", worker=child.slot, worker_pid=child.pid, status=desc, error=message
            )
            self.fail(error)
            return
        # never ready: it was never healthy, however long its boot took
        self._crashed(child, slot, f"failed to boot: {message}", 0.0, now)

    def _crashed(self, child: Child, slot: Slot | None, why: str, lived: float, now: float) -> None:
        if slot is None:
            return
        decision = self._policy.on_crash(slot.streak, lived)
        slot.streak = decision.streak
        fields = {
            "worker": child.slot,
            "worker_pid": child.pid,
            "status": why,
            "crashes_in_a_row": decision.streak,
        }
        if decision.give_up:
            log.error("worker crashed", **fields)
            self.fail(
                CrashLoopError(
                    f"worker {child.slot} crashed {decision.streak} times in a row (last: {why}); "
                    f"giving up (--crash-limit {self.config.crash_limit})"
                )
            )
            return
        slot.spawn_at = now + decision.delay
        slot.waited = decision.delay
        log.warning("worker crashed", **fields, restart_in_s=decision.delay)

    def fail(self, error: SupervisorError) -> None:
        """Record the error that ends the run (the first one wins) and stop."""
        if self.error is None:
            self.error = error
        self.begin_stop("graceful", str(error))

    def begin_stop(self, mode: str, reason: str) -> None:
        if self.stopping == "fast" or self.stopping == mode:
            return
        now = self._clock()
        log.info("stopping", mode=mode, reason=reason, workers=len(self.children))
        systemd.notify("STOPPING=1", f"STATUS=stopping: {reason}")
        self.stopping = mode
        for listener in self.listeners:
            listener.close()  # the workers close theirs at once too: new clients are refused
        for old in self._adopted.values():
            self._procs.signal(old.pid, signal.SIGTERM if mode == "graceful" else signal.SIGQUIT)
            old.kill_at = self._clock() + (
                self.config.graceful_timeout + KILL_MARGIN if mode == "graceful" else FAST_GRACE
            )
        self._abort_reload()
        sig = signal.SIGTERM if mode == "graceful" else signal.SIGQUIT
        grace = self.config.graceful_timeout + KILL_MARGIN if mode == "graceful" else FAST_GRACE
        for child in list(self.children.values()):
            child.stop_reason = child.stop_reason or "shutdown"
            if child.failure is None or mode == "fast":
                self._procs.signal(child.pid, sig)
            deadline = now + grace
            child.kill_at = deadline if child.kill_at is None else min(child.kill_at, deadline)

    def retire(self, child: Child, reason: str, now: float) -> None:
        """Ask one worker to finish and exit (reload, scale down)."""
        if child.failure:
            return  # already being killed for misbehaving; keep that (earlier) deadline
        child.stop_reason = reason
        deadline = now + self.config.graceful_timeout + KILL_MARGIN
        child.kill_at = deadline if child.kill_at is None else min(child.kill_at, deadline)
        self._procs.retire(child.pid)

    def scale(self, workers: int) -> None:
        if self.stopping:
            return
        if workers > MAX_WORKERS:
            log.warning("scale-up refused", error=f"--workers is at most {MAX_WORKERS}")
            return
        if self._budget is not None and workers > self.config.workers:
            from supervisor import database as dbmod

            try:
                dbmod.check_budget(workers, self._per_worker(), *self._budget)
            except ConfigError as exc:
                log.warning("scale-up refused", error=str(exc))
                return
        log.info("scaling", workers_from=self.config.workers, workers_to=workers)
        self.config = replace(self.config, workers=workers)

    def request_reload(self, now: float) -> None:
        if self.stopping:
            return
        if self._reloading or any(s.pending for s in self.slots.values()):
            log.info("a replacement is in progress; the reload will follow it")
            self._reload_again = True
            return
        if self._reload_config is not None:
            try:
                new = self._reload_config()
            except SupervisorError as exc:
                log.error(
                    "reload aborted: invalid configuration; the running workers are kept", error=str(exc)
                )
                return
            changed = {
                name: value for name, value, _ in new.describe() if getattr(self.config, name) != value
            }
            self.config = replace(new, target=self.config.target)
            self._policy = CrashPolicy(new.crash_limit, new.crash_reset)
        else:
            changed = {}
        try:
            self.hooks.run("on_reload", self.info())
        except HookError as exc:
            log.error("reload aborted: hook failed", hook=exc.hook, exc_info=exc.original)
            return
        if self.config.preload:
            self._reload_by_reexec()  # returns only if the reload was aborted
            return
        if self._budget is not None:
            from supervisor import database as dbmod

            try:
                dbmod.check_budget(self.config.workers, self._per_worker(), *self._budget)
            except ConfigError as exc:
                log.warning(
                    "reload keeps the current number of workers: the new one would "
                    "exceed the connection budget",
                    workers=len(self.slots),
                    error=str(exc),
                )
                self.config = replace(self.config, workers=len(self.slots))
        self._reload_queue = sorted(
            sid for sid, s in self.slots.items() if s.child is not None and s.child.ready_at is not None
        )
        self._reloading = True
        systemd.notify("RELOADING=1", systemd.monotonic_usec(), "STATUS=reloading")
        log.info("reloading", workers=len(self._reload_queue), changed=changed or None)

    def _reload_by_reexec(self) -> None:
        """--preload: new code needs a new process image (see _reexec.py)."""
        from supervisor import _reexec

        if not isinstance(self._procs, _Forker):
            return
        error = _reexec.check_new_code(timeout=self.config.boot_timeout or 60.0)
        if error is not None:
            log.error(
                "reload aborted: the new code or configuration does not load; the running workers are kept",
                error=error,
            )
            return
        workers = [
            _reexec.Adopted(c.pid, c.slot, self._procs._commands[c.pid])
            for c in self.children.values()
            if c.pid in self._procs._commands
        ] + list(self._adopted.values())
        handover = _reexec.Handover(
            [(lst.sock.fileno(), lst.address, lst.unix_path) for lst in self.listeners],
            [self._life_w, *self._old_lifelines],
            workers,
        )
        log.info(
            "re-executing the master to load new code; pid, sockets and workers are kept",
            workers=len(workers),
        )
        systemd.notify("RELOADING=1", systemd.monotonic_usec(), "STATUS=reloading (re-exec)")
        try:
            _reexec.execute(handover)
        except OSError as exc:
            log.error("reload aborted: re-exec failed; the running workers are kept", error=str(exc))
            self._reload_failed()

    def _retire_adopted(self, now: float) -> None:
        """The new image's workers are all ready: the previous image's may go."""
        for old in self._adopted.values():
            if old.kill_at is None:
                old.kill_at = now + self.config.graceful_timeout + KILL_MARGIN
                try:
                    os.write(old.command_fd, _channel.RETIRE.encode() + b"\n")
                except OSError:
                    self._procs.signal(old.pid, signal.SIGTERM)
        if self._adopted:
            log.info("retiring the previous image's workers", workers=len(self._adopted))

    def _abort_reload(self) -> None:
        self._reload_queue.clear()
        self._reloading = False
        self._reload_again = False

    def _reload_failed(self) -> None:
        """A reload gave up and the current workers keep serving: systemd was
        told RELOADING=1, and must hear READY=1 or the unit stays 'reloading'."""
        self._abort_reload()
        systemd.notify(
            "READY=1", f"STATUS=reload failed; {self.ready_count()} workers serving the previous code"
        )

    def _advance_reload(self, now: float) -> None:
        """Start the next slot's replacement once none is pending; notice the end."""
        while self._reload_queue and not any(s.pending for s in self.slots.values()):
            rolling = self.slots.get(self._reload_queue.pop(0))
            if rolling is None or rolling.child is None or rolling.child.ready_at is None:
                continue  # scaled away, finished, or crashed meanwhile: nothing to roll
            if rolling.child.stop_reason or rolling.child.failure:
                continue
            rolling.pending = self._spawn(rolling, now, replacing=rolling.child)
            if rolling.pending is None:
                return  # before_fork failed; _spawn aborted the reload
        if any(s.pending for s in self.slots.values()):
            return
        if self._reloading and not self._reload_queue:
            self._reloading = False
            log.info("reload complete")
            systemd.notify("READY=1", f"STATUS={len(self.slots)} workers ready (reloaded)")
        if self._reload_again and not self.stopping:
            self._reload_again = False
            self.request_reload(now)
            if self._reload_queue:
                self._advance_reload(now)  # start now: the loop may not tick again soon

    def log_status(self, now: float) -> None:
        for slot_id in sorted(self.slots):
            slot = self.slots[slot_id]
            for child in (slot.child, slot.pending):
                if child is not None:
                    self._status_line(child, slot, now)
        for child in self.children.values():
            owner = self.slots.get(child.slot)
            if owner is None or child not in (owner.child, owner.pending):
                self._status_line(child, owner, now)

    def _status_line(self, child: Child, slot: Slot | None, now: float) -> None:
        log.info(
            "worker status",
            worker=child.slot,
            worker_pid=child.pid,
            state=child.state,
            age_s=round(now - child.spawned_at, 3),
            heartbeat_age_s=round(max(0.0, now - child.heartbeat.last), 3),
            work=child.heartbeat.work,
            crashes_in_a_row=slot.streak if slot else 0,
        )

    def tick(self, now: float) -> None:
        """Enforce deadlines, then make the set of workers match the config."""
        cfg = self.config
        for old in self._adopted.values():
            if old.kill_at is not None and now >= old.kill_at:
                old.kill_at = None
                self._procs.signal(old.pid, signal.SIGKILL)
        if self._watchdog is not None and now >= self._next_watchdog:
            systemd.notify("WATCHDOG=1")
            self._next_watchdog = now + self._watchdog
        for child in list(self.children.values()):
            if child.kill_at is not None and now >= child.kill_at:
                if child.failure is None:
                    log.warning(
                        "worker did not stop in time; killing", worker=child.slot, worker_pid=child.pid
                    )
                child.kill_at = None
                self._procs.signal(child.pid, signal.SIGKILL)
            elif child.failure or child.stop_reason:
                continue
            elif child.ready_at is None:
                if cfg.boot_timeout and now - child.spawned_at >= cfg.boot_timeout:
                    self._abort(child, f"did not become ready within {cfg.boot_timeout:g} s", now)
            elif cfg.timeout and now - child.heartbeat.last >= cfg.timeout:
                self._abort(child, f"heartbeat timeout (none for {now - child.heartbeat.last:.1f} s)", now)
        if self.stopping:
            return
        self._reconcile(now)

    def _abort(self, child: Child, why: str, now: float) -> None:
        log.error(
            "worker stuck; dumping its stacks to stderr, then killing it",
            worker=child.slot,
            worker_pid=child.pid,
            reason=why,
        )
        child.failure = why
        child.kill_at = now + ABORT_GRACE
        self._procs.signal(child.pid, DUMP_SIGNAL)

    def _reconcile(self, now: float) -> None:
        wanted = self.config.workers
        for slot_id in range(1, wanted + 1):
            self.slots.setdefault(slot_id, Slot(slot_id))
        for slot_id in [s for s in self.slots if s > wanted]:
            slot = self.slots.pop(slot_id)
            for child in (slot.child, slot.pending):
                if child is not None and child.pid in self.children:
                    self.retire(child, "scaled down", now)
        self._check_booted(now)
        self._advance_reload(now)
        while self._recycle_queue and not self._reloading and not any(s.pending for s in self.slots.values()):
            pid, reason = self._recycle_queue.pop(0)
            waiting = self.children.get(pid)
            if waiting is not None:
                self.recycle(waiting, reason, now)
        for slot in sorted(self.slots.values(), key=lambda s: s.id):
            if self.stopping:
                return  # a failed before_fork may have just begun a stop
            if slot.child is None and slot.pending is None and not slot.finished and now >= slot.spawn_at:
                slot.child = self._spawn(slot, now)

    def _spawn(
        self, slot: Slot, now: float, replacing: Child | None = None, reason: str = "reload"
    ) -> Child | None:
        try:
            self.hooks.run("before_fork", WorkerInfo(slot.id, None))
        except HookError as exc:
            log.error("hook failed", hook=exc.hook, exc_info=exc.original)
            if not self.booted:
                self.fail(WorkerBootError(str(exc)))
            elif replacing is None:
                self._crashed(Child(slot.id, 0, _channel.Heartbeat(), -1, now), slot, str(exc), 0.0, now)
            elif reason == "reload":
                self._reload_failed()
            return None
        pid, fd, heartbeat = self._procs.spawn(self, slot.id)
        child = Child(slot.id, pid, heartbeat, fd, now, replacing=replacing, replace_reason=reason)
        self.children[pid] = child
        if fd >= 0 and self._selector is not None:
            self._selector.register(fd, selectors.EVENT_READ, child)
        fields = {"worker": slot.id, "worker_pid": pid}
        if slot.waited:
            fields["after_backoff_s"] = slot.waited  # type: ignore[assignment]
            slot.waited = 0.0
        if replacing is not None:
            fields["replacing_pid"] = replacing.pid
        log.info("worker spawned", **fields)
        return child

    def next_wakeup(self, now: float) -> float | None:
        """Seconds until the next deadline, or None to sleep until a signal."""
        deadlines: list[float] = []
        cfg = self.config
        for child in self.children.values():
            if child.kill_at is not None:
                deadlines.append(child.kill_at)
            elif child.failure or child.stop_reason:
                continue
            elif child.ready_at is None:
                if cfg.boot_timeout:
                    deadlines.append(child.spawned_at + cfg.boot_timeout)
            elif cfg.timeout:
                deadlines.append(child.heartbeat.last + cfg.timeout)
        if not self.stopping:
            for slot in self.slots.values():
                if slot.child is None and slot.pending is None and not slot.finished:
                    deadlines.append(slot.spawn_at)
        if self._watchdog is not None:
            deadlines.append(self._next_watchdog)
        deadlines += [old.kill_at for old in self._adopted.values() if old.kill_at is not None]
        if not deadlines:
            return None
        # a hair late, so the deadline has passed when we look again
        return max(0.0, min(deadlines) - now) + 0.001

    # -- process plumbing (only in real runs) -----------------------------------

    def _open(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._life_r, self._life_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in HANDLED:
            # Until the loop runs, a stop signal must interrupt whatever start-up
            # is waiting for (the database, the migration lock, an import).
            handler = _interrupt_start if sig in _STOPS else _record_only
            self._old_handlers[sig] = signal.signal(sig, handler)
        _proctitle.set_title(f"master {self.config.target}")

    def _arm_signals(self) -> None:
        """From here on the loop acts on every signal; handlers only record."""
        for sig in _STOPS:
            signal.signal(sig, _record_only)

    def _close(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._old_wakeup)
        exit_code = int(self.error.exit_code) if self.error else 0
        for failure in self.hooks.run_all("on_exit", self.info(exit_code)):
            log.error("hook failed", hook=failure.hook, exc_info=failure.original)
        if self.listeners:
            from supervisor import sockets

            sockets.close(self.listeners, unlink=True)
        if self.health is not None:
            self.health.close()
        if self._selector is not None:
            self._selector.close()
        for fd in (self._wake_r, self._wake_w, self._life_r, self._life_w):
            if fd >= 0:
                os.close(fd)

    def _unregister(self, child: Child) -> None:
        if child.report_fd < 0:
            return
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(child.report_fd)
        os.close(child.report_fd)
        child.report_fd = -1

    def master_fds(self) -> list[int]:
        """Descriptors only the master may hold; a new worker closes them."""
        fds = [self._wake_r, self._wake_w, self._life_w]
        fileno = getattr(self._selector, "fileno", None)  # epoll/kqueue hold a descriptor
        if callable(fileno):
            fds.append(fileno())
        fds += [c.report_fd for c in self.children.values() if c.report_fd >= 0]
        if self.health is not None:
            fds += self.health.fds()
        fds += [old.command_fd for old in self._adopted.values()]
        fds += self._old_lifelines
        return [fd for fd in fds if fd >= 0]


_STOPS = _signals.STOP


class _StartInterrupted(KeyboardInterrupt):
    """A stop signal arrived before any worker was forked. A KeyboardInterrupt,
    so that psycopg cancels a running statement (a migration) on the server
    instead of leaving it running, and ``except Exception`` in user code
    running during start-up (an import, a hook) does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signal_name = signal.Signals(signum).name


def _interrupt_start(signum: int, frame: object) -> None:
    # One shot: a second Ctrl-C while start-up unwinds is only recorded.
    for sig in _STOPS:
        signal.signal(sig, _record_only)
    raise _StartInterrupted(signum)


def _record_only(signum: int, frame: object) -> None:
    """Installed for every handled signal so the C handler writes its number to
    the wake-up pipe; the loop does the work. Nothing else is safe here."""


class _Forker:
    """The real :class:`Processes`: fork, kill, waitpid."""

    def __init__(self) -> None:
        self._collected = False
        self._commands: dict[int, int] = {}  # pid -> write end of its command pipe

    def spawn(self, master: Master, slot: int) -> tuple[int, int, _channel.Heartbeat]:
        forksafety.before_fork()
        read_fd, write_fd = os.pipe()
        command_r, command_w = os.pipe()  # master -> this worker ("retire")
        heartbeat = _channel.Heartbeat()
        spec = WorkerSpec(
            id=slot,
            config=master.config,
            hooks=master.hooks,
            target=master.target,
            heartbeat=heartbeat,
            report_fd=write_fd,
            lifeline_fd=master._life_r,
            command_fd=command_r,
            close_fds=[*master.master_fds(), read_fd, command_w, *self._commands.values()],
            close_heartbeats=[c.heartbeat for c in master.children.values()],
            database=master.database,
            listeners=master.listeners,
        )
        if not self._collected:
            gc.collect()  # garbage frozen now would never be freed
            self._collected = True
        # Move everything the master holds out of the collector's reach: a
        # worker's first full collection then leaves those pages shared (with
        # --preload, the whole app), and the next fork guard sweep only walks
        # objects made since this fork.
        gc.freeze()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals that reach the child before it installs its own handlers would
        # run the master's (writing into the master's wake-up pipe) or kill it:
        # hold them until the child is ready for them (run_worker unblocks).
        spec.sigmask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
            if pid == 0:
                run_worker(spec)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, spec.sigmask)
        os.close(write_fd)
        os.close(command_r)
        os.set_blocking(read_fd, False)
        os.set_blocking(command_w, False)
        self._commands[pid] = command_w
        return pid, read_fd, heartbeat

    def signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already dead; the reap will tell
            os.kill(pid, sig)

    def retire(self, pid: int) -> None:
        try:
            os.write(self._commands[pid], _channel.RETIRE.encode() + b"\n")
        except (KeyError, OSError):  # no pipe (gone, or full): a plain graceful stop
            self.signal(pid, signal.SIGTERM)

    def reap(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return out
            if pid == 0:
                return out
            command = self._commands.pop(pid, None)
            if command is not None:
                os.close(command)
            out.append((pid, os.waitstatus_to_exitcode(status)))
