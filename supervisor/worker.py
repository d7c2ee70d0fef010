"""Inside a worker: bootstrap after fork, the control thread, graceful stop.

The child of ``fork()`` never returns into the master's code: :func:`run_worker`
ends with ``os._exit``, so the master's ``atexit`` handlers, buffered files and
finalizers never run twice.

Signals reach one control thread as bytes on a pipe: through
``signal.set_wakeup_fd`` (C level, whichever thread got the signal), or, when
an event loop such as uvloop has taken the wake-up fd over, written by the
Python handler that loop then runs. The same thread watches the *lifeline*, a
pipe whose only writer is the master, so end-of-file means the master is gone,
even if it was SIGKILLed. It also beats the heartbeat for synchronous targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import random
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from supervisor import _channel, _proctitle, _signals, forksafety
from supervisor.config import Config

if TYPE_CHECKING:
    from supervisor.database import Database
    from supervisor.sockets import Listener
from supervisor import _dbregistry
from supervisor._dbregistry import databases
from supervisor.errors import (
    ConfigError,
    ExitCode,
    HookError,
    SupervisorError,
    TargetError,
    WorkerBootError,
)
from supervisor.hooks import Hooks
from supervisor.logging import get_logger, set_process
from supervisor.serve import runner_for
from supervisor.target import Target, resolve

log = get_logger()

# Signals the master handles; a worker starts from their defaults, then takes
# the ones it acts on. HUP/TTIN/TTOU/USR2 are the master's business: a worker
# that gets them (say, from a process-group kill) ignores them.
_MASTER_SIGNALS = _signals.MASTER
_IGNORED = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
DUMP_SIGNAL = signal.SIGUSR2  # "write your stacks to stderr"
_STOP = (signal.SIGTERM, signal.SIGINT)
_ARTICLE = {"asgi": "an", "wsgi": "a", "main": "a"}
MEMORY_CHECK_EVERY = 1.0  # seconds between --max-worker-memory / --max-requests checks
ORPHAN_GRACE = 1.5  # seconds an orphaned worker gets to finish before it exits


class Worker:
    """A running worker, seen from inside it.

    It is the argument of ``main(worker)`` and of the ``after_fork``,
    ``worker_ready`` and ``worker_exit`` hooks. ``id`` is stable (1..N): a
    replacement takes the id of the worker it replaces. ``stopping`` is set
    when the worker should finish its current work and return.
    """

    def __init__(
        self,
        id: int,
        config: Config,
        heartbeat: _channel.Heartbeat,
        database: Database | None = None,
        report_fd: int = -1,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.id = id
        self.pid = os.getpid()
        self.config = config
        self.stopping = threading.Event()
        self.started_at = time.time()
        self._heartbeat = heartbeat
        self._manual_heartbeat = False
        # "thread": the control thread beats; "loop": a runner beats from its event loop.
        self._beat_source = "thread"
        self._beat_interval = heartbeat_interval(config.timeout)
        self._lock = threading.Lock()
        self._stop_callbacks: list[Callable[[], None]] = []
        self._database = database
        self._report_fd = report_fd
        self.listeners: list[Listener] = list(listeners or [])  # the master's sockets
        self._on_unreachable: Callable[[], None] = lambda: None
        # Set when the master retires this worker because a replacement is
        # ready (reload, recycle, scale-down), as opposed to a full shutdown:
        # servers then let idle keep-alive clients finish politely.
        self.retiring = False
        # this worker's recycling threshold, jittered so workers do not all go at once
        self.max_requests = (
            config.max_requests + random.randint(0, config.max_requests_jitter) if config.max_requests else 0
        )
        self._recycle_asked = False
        # a runner's own measure of progress: when it last had capacity, None while it has
        # (the WSGI bridge: its request threads); loop beats do not pass that time
        self._stalled_since: Callable[[], float | None] = lambda: None

    @property
    def db(self) -> Database:
        """The supervisor's database (``--database-url``), with this worker's own pool."""
        database = (
            self._database
            if self._database is not None and not self._database._is_default
            else _dbregistry.default()
        )
        if database is None:
            from supervisor.errors import ConfigError

            raise ConfigError("no database configured: pass --database-url or set DATABASE_URL")
        return database

    async def _open_async_databases(self) -> None:
        """Built-in step of async runners: this worker's async pools, in its loop."""
        for db in _dbregistry.in_use():
            await db._open_async(self, self._on_unreachable)

    async def _close_async_databases(self) -> None:
        for db in databases():
            try:
                await db._close_async()
            except Exception:
                log.exception("closing a database pool failed", database=db.name)

    def request_recycle(self, reason: str) -> None:
        """Ask the master to replace this worker (a new one is started first)."""
        if not self._recycle_asked:
            self._recycle_asked = True
            log.info("asking to be replaced", reason=reason)
            _channel.send(self._report_fd, _channel.RECYCLE, reason)

    def _check_limits(self, done: int) -> None:
        """Recycle once ``done`` units of work reach this worker's --max-requests."""
        if self.max_requests and done >= self.max_requests:
            self.request_recycle(f"max requests ({self.max_requests})")

    def heartbeat(self) -> None:
        """Tell the master this worker is making progress.

        Until a target calls this, the worker beats on its own: from a thread
        for a synchronous ``main``, from inside the event loop for an async one
        (so a blocked loop is caught). After the first call only explicit calls
        count, so a loop that hangs for longer than ``--timeout`` gets the
        worker killed and replaced.
        """
        self._manual_heartbeat = True
        self._heartbeat.beat()

    def count_work(self, n: int = 1) -> None:
        """Add to the units of work shown in the master's status line (USR1)."""
        self._heartbeat.add_work(n)

    async def stop_requested(self) -> None:
        """Wait, in an event loop, until the worker is asked to stop."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def resolve_done() -> None:
            if not done.done():
                done.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(resolve_done)

        with self._lock:
            if self.stopping.is_set():
                return
            self._stop_callbacks.append(wake)
        try:
            await done
        finally:
            with self._lock:
                if wake in self._stop_callbacks:
                    self._stop_callbacks.remove(wake)

    def _request_stop(self) -> None:
        with self._lock:
            self.stopping.set()
            callbacks = list(self._stop_callbacks)
        for callback in callbacks:
            callback()

    async def beat_from_loop(self) -> None:
        """Beat from inside the running event loop until cancelled (runners use
        this, so a loop blocked longer than ``--timeout`` is detected)."""
        self._beat_source = "loop"
        if self._beat_interval is None:
            return
        while True:
            if not self._manual_heartbeat:
                self._heartbeat.beat(self._stalled_since())
            await asyncio.sleep(self._beat_interval)

    def __repr__(self) -> str:
        return f"<Worker id={self.id} pid={self.pid}>"


@dataclass
class WorkerSpec:
    """Everything a child needs, prepared by the master before ``fork()``."""

    id: int
    config: Config
    hooks: Hooks
    target: Target | None  # already imported (preload), else imported in the child
    heartbeat: _channel.Heartbeat
    report_fd: int
    lifeline_fd: int
    command_fd: int = -1  # master -> worker commands ("retire")
    close_fds: list[int] = field(default_factory=list)
    close_heartbeats: list[_channel.Heartbeat] = field(default_factory=list)
    database: Database | None = None
    listeners: list[Listener] = field(default_factory=list)
    sigmask: set[int | signal.Signals] = field(default_factory=set)  # the master's, before fork


def _rss_mb() -> int:
    """This process's resident memory, in MB (Linux /proc; 0 when unknown)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def heartbeat_interval(timeout: float) -> float | None:
    """How often to beat: four times per --timeout, at most every 10 s; never
    when the timeout is off (nothing reads the beats then)."""
    return min(10.0, timeout / 4) if timeout > 0 else None


class _WorkerProcess:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.config = spec.config
        self.worker = Worker(
            spec.id, spec.config, spec.heartbeat, spec.database, spec.report_fd, spec.listeners
        )
        self._unreachable_reported = False
        self._next_memory_check = 0.0
        self.worker._on_unreachable = self._unreachable
        self._next_stats = time.monotonic() + spec.config.pool_stats_interval
        self._deadline: float | None = None
        self._deadline_reason = ""
        self._wake_r, self._wake_w = os.pipe()

    # -- process set-up -------------------------------------------------------

    def _reset_process(self) -> None:
        for sig in _MASTER_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        for fd in self.spec.close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for hb in self.spec.close_heartbeats:
            hb.close()
        forksafety.after_fork_in_child()
        # systemd's variables speak to the master (its pid); the app must not answer them
        for name in (
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
        ):
            os.environ.pop(name, None)
        set_process("worker", self.spec.id)
        _proctitle.set_title(f"worker {self.spec.id} {self.config.target}")
        os.set_blocking(self._wake_w, False)
        # C level: the signal's number reaches the control thread whichever
        # thread the kernel delivered it to (a Python handler runs only in the
        # main thread, which an idle event loop may never hand back).
        wake_w = self._wake_w
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

        def record(signum: int, frame: object) -> None:
            # An event loop (uvloop) may have taken the wake-up fd for itself; its
            # loop then runs this handler, and the byte must be written here.
            current = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
            if current != wake_w:
                signal.set_wakeup_fd(current, warn_on_full_buffer=False)
                with contextlib.suppress(OSError):  # a full pipe already holds a wake-up
                    os.write(wake_w, bytes([signum]))

        for sig in (*_STOP, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(sig, record)
        for sig in _IGNORED:
            signal.signal(sig, signal.SIG_IGN)
        # the master blocked these around fork; restoring its mask delivers what
        # arrived meanwhile, to the handlers just installed
        signal.pthread_sigmask(signal.SIG_SETMASK, self.spec.sigmask)
        # The master sends DUMP_SIGNAL to a worker that missed its heartbeat,
        # then SIGKILL: every thread's stack is written first, at C level, so it
        # works even when the main thread is stuck. (Not SIGABRT: Python cannot
        # catch it without aborting, which can leave core files behind.)
        faulthandler.enable(file=sys.stderr, all_threads=True)
        faulthandler.register(DUMP_SIGNAL, file=sys.stderr, all_threads=True, chain=False)

    # -- the control thread ---------------------------------------------------

    def _control(self) -> None:
        lifeline: int | None = self.spec.lifeline_fd
        command: int | None = self.spec.command_fd if self.spec.command_fd >= 0 else None
        commands = _channel.LineReader()
        while True:
            watch = [self._wake_r] + [fd for fd in (lifeline, command) if fd is not None]
            from_thread = self.worker._beat_source == "thread" and self.worker._beat_interval
            timeout = self.worker._beat_interval if from_thread else None
            if self._deadline is not None:
                left = max(0.0, self._deadline - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            if self.config.pool_stats_interval:
                left = max(0.0, self._next_stats - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            if self.config.max_worker_memory or self.config.max_requests:
                timeout = MEMORY_CHECK_EVERY if timeout is None else min(timeout, MEMORY_CHECK_EVERY)
            readable, _, _ = select.select(watch, [], [], timeout)
            if self._wake_r in readable:
                for signum in os.read(self._wake_r, 64):
                    self._on_signal(signum)
            if command is not None and command in readable:
                data = os.read(command, 256)
                if not data:
                    command = None  # the master is gone; the lifeline says so too
                for line in commands.feed(data):
                    if line == _channel.RETIRE and not self.worker.stopping.is_set():
                        log.info(
                            "retiring: a replacement is ready; finishing current work",
                            graceful_timeout_s=self.config.graceful_timeout,
                        )
                        self.worker.retiring = True
                        self._stop(self.config.graceful_timeout, "graceful timeout")
            if lifeline is not None and lifeline in readable and not os.read(lifeline, 64):
                lifeline = None
                log.warning("master process is gone; stopping", grace_s=ORPHAN_GRACE)
                self._stop(min(self.config.graceful_timeout, ORPHAN_GRACE), "master is gone")
            if from_thread and not self.worker._manual_heartbeat:
                self.spec.heartbeat.beat()
            self.worker._check_limits(self.spec.heartbeat.work)
            if self.config.max_worker_memory and time.monotonic() >= self._next_memory_check:
                self._next_memory_check = time.monotonic() + MEMORY_CHECK_EVERY
                rss_mb = _rss_mb()
                if rss_mb > self.config.max_worker_memory:
                    self.worker.request_recycle(
                        f"memory {rss_mb} MB > --max-worker-memory {self.config.max_worker_memory}"
                    )
            if self.config.pool_stats_interval and time.monotonic() >= self._next_stats:
                self._next_stats = time.monotonic() + self.config.pool_stats_interval
                self._log_pool_stats()
            if self._deadline is not None and time.monotonic() >= self._deadline:
                log.warning("did not stop in time; exiting", reason=self._deadline_reason)
                self._close_databases()
                os._exit(1)

    def _on_signal(self, signum: int) -> None:
        # A repeated TERM/INT is not an escalation here: Ctrl-C delivers INT to
        # the whole process group and the master adds its own TERM. The master
        # escalates (QUIT) when the user insists.
        if signum in _STOP and not self.worker.stopping.is_set():
            log.info(
                "stopping gracefully",
                signal=signal.Signals(signum).name,
                graceful_timeout_s=self.config.graceful_timeout,
            )
            self._stop(self.config.graceful_timeout, "graceful timeout")
        elif signum == signal.SIGQUIT:
            os._exit(0)
        elif signum == signal.SIGUSR1:
            log.info(
                "status",
                uptime_s=round(time.time() - self.worker.started_at, 3),
                threads=threading.active_count(),
                work=self.spec.heartbeat.work,
                heartbeat="manual" if self.worker._manual_heartbeat else "automatic",
            )
            self._log_pool_stats()

    def _log_pool_stats(self) -> None:
        for db in databases():
            stats = db.stats()
            if stats:
                log.info("pool stats", database=db.name, **stats)

    def _unreachable(self) -> None:  # called from a pool thread or task
        if not self._unreachable_reported:
            self._unreachable_reported = True
            log.error("database unreachable past --pool-reconnect-timeout; asking to be replaced")
            self.worker.request_recycle("database unreachable")

    def _open_databases(self) -> None:
        """Built-in step: each Database known now gets this worker's own pool."""
        for db in _dbregistry.in_use():
            db._open(self.worker, self._unreachable)

    def _close_databases(self) -> None:
        forksafety.worker_exiting()

    def _stop(self, grace: float, reason: str) -> None:
        deadline = time.monotonic() + grace
        if self._deadline is None or deadline < self._deadline:
            self._deadline, self._deadline_reason = deadline, reason
        self.worker._request_stop()

    # -- the worker's life ----------------------------------------------------

    def _fail_boot(self, code: int, message: str) -> int:
        _channel.send_error(self.spec.report_fd, code, message)
        log.error("worker failed to boot", error=message)
        self._close_databases()
        return code

    def run(self) -> int:
        self._reset_process()
        threading.Thread(target=self._control, name="supervise-control", daemon=True).start()
        hooks = self.spec.hooks
        try:
            hooks.run("after_fork", self.worker)
            target = self.spec.target or resolve(
                self.config.target, self.config.interface, self.config.factory
            )
            # Pools open once the target is known: an async target gets its pools
            # inside its event loop (the runner calls worker._open_async_databases).
            if not target.is_async:
                self._open_databases()
        except HookError as exc:
            log.error("hook failed", hook=exc.hook, exc_info=exc.original)
            return self._fail_boot(ExitCode.BOOT_FAILED, str(exc))
        except TargetError as exc:
            return self._fail_boot(ExitCode.TARGET, str(exc))
        except (WorkerBootError, ConfigError) as exc:
            return self._fail_boot(ExitCode.BOOT_FAILED, str(exc))
        runner = runner_for(target)
        if runner is None:
            return self._fail_boot(
                ExitCode.TARGET,
                f"target {target.spec!r} is {_ARTICLE[target.kind.value]} {target.kind.value.upper()} "
                "app, which this version of pg-supervise cannot run",
            )

        def ready() -> None:
            if self.worker.stopping.is_set():
                raise _StoppedBeforeReady
            hooks.run("worker_ready", self.worker)
            _channel.send(self.spec.report_fd, _channel.READY)

        code = 0
        try:
            code = runner(target, self.worker, ready)
        except _StoppedBeforeReady:
            self._close_databases()
            return 0
        except HookError as exc:
            log.error("hook failed", hook=exc.hook, exc_info=exc.original)
            return self._fail_boot(ExitCode.BOOT_FAILED, str(exc))
        except (WorkerBootError, ConfigError) as exc:  # an async runner's pools
            return self._fail_boot(ExitCode.BOOT_FAILED, str(exc))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not 0 <= code <= 255:
                code = 1  # os._exit(256) would read as 0: a clean finish it was not
        except Exception:
            log.exception("main raised; worker exiting")
            code = 1
        for failure in hooks.run_all("worker_exit", self.worker):
            log.error("hook failed", hook=failure.hook, exc_info=failure.original)
        self._close_databases()
        return code


class _StoppedBeforeReady(Exception):
    """A stop arrived while the worker was still booting: leave quietly."""


def run_worker(spec: WorkerSpec) -> NoReturn:
    """Entry point of a forked child. Never returns."""
    code = ExitCode.INTERNAL.value
    try:
        code = _WorkerProcess(spec).run()
    except SupervisorError as exc:
        log.error(str(exc))
    except BaseException:
        with contextlib.suppress(BaseException):
            log.exception("worker crashed in bootstrap")
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
