"""A worker's life after ``fork()``: reset, boot, run, exit.

    reset:  signals to their defaults, the master's descriptors closed,
            inherited database objects dropped without I/O
    boot:   after_fork -> target (imported here unless preloaded) -> pools
            -> the runner calls ready (worker_ready, then "ready" to the master)
    run:    the runner, until the target returns or the worker is stopped
    exit:   worker_exit -> pools closed -> os._exit; or, when the master
            promoted it, become the mold (``mold.py``) and fork new workers

The child never returns into the master's code: :func:`run_worker` ends with
``os._exit``, so the master's ``atexit`` handlers, buffered files and
finalizers never run twice.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import select
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

from supervisor.database import fork_guard, registry
from supervisor.errors import ConfigError, ExitCode, HookError, SupervisorError, TargetError, WorkerBootError
from supervisor.logging import get_logger, set_process
from supervisor.shared import channel, proctitle, signals
from supervisor.target import Target, resolve
from supervisor.worker.control_thread import STOP, Control, report_pools
from supervisor.worker.public import Worker
from supervisor.worker.runners import runner_for
from supervisor.worker.runtime import Runtime, StoppedBeforeReady
from supervisor.worker.spec import WorkerSpec

if TYPE_CHECKING:
    pass

log = get_logger()

# HUP/TTIN/TTOU are the master's business: a worker that gets them (say, from
# a process-group kill) ignores them.
_IGNORED = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
# systemd's variables speak to the master (its pid); the app must not answer them
_SYSTEMD_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)


class _WorkerProcess:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.config = spec.config
        self.worker = Worker(
            spec.id, spec.config, spec.heartbeat, spec.database, spec.report_fd, spec.listeners
        )
        self.worker.refork_at = spec.refork_at
        self._unreachable_reported = False
        self._wake_r, self._wake_w = os.pipe()
        self.control = Control(
            self.worker, self._wake_r, self._wake_w, spec.lifeline_fd, spec.command_fd, self._exit_now
        )

    def _reset_process(self) -> None:
        for sig in signals.MASTER:
            signal.signal(sig, signal.SIG_DFL)
        for fd in self.spec.close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for hb in self.spec.close_heartbeats:
            hb.close()
        fork_guard.after_fork_in_child()
        for name in _SYSTEMD_VARIABLES:
            os.environ.pop(name, None)
        set_process("worker", self.spec.id)
        generation = f" gen {self.spec.generation}" if self.spec.generation else ""
        proctitle.set_title(f"worker {self.spec.id}{generation} {self.config.target}")
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

        for sig in (*STOP, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(sig, record)
        for sig in _IGNORED:
            signal.signal(sig, signal.SIG_IGN)
        # the master blocked these around fork; restoring its mask delivers what
        # arrived meanwhile, to the handlers just installed
        signal.pthread_sigmask(signal.SIG_SETMASK, self.spec.sigmask)
        # A worker that missed its heartbeat gets the dump signal, then SIGKILL:
        # every thread's stack is written first, at C level, so it works even
        # when the main thread is stuck.
        faulthandler.enable(file=sys.stderr, all_threads=True)
        faulthandler.register(signals.DUMP, file=sys.stderr, all_threads=True, chain=False)

    # -- pools: the built-in steps around the target ---------------------------

    def _unreachable(self) -> None:  # called from a pool thread or task
        if not self._unreachable_reported:
            self._unreachable_reported = True
            log.error("database unreachable past --pool-reconnect-timeout; asking to be replaced")
            self.worker.request_recycle("database unreachable")

    def _open_pools(self) -> None:
        """Each Database known now gets this worker's own sync pool."""
        for db in registry.in_use():
            db._open(self.worker.id, self.config, self._unreachable)

    def _exit_now(self, code: int) -> None:
        fork_guard.worker_exiting()
        os._exit(code)

    def _fail_boot(self, code: int, message: str) -> int:
        channel.send_error(self.spec.report_fd, code, message)
        log.error("worker failed to boot", error=message)
        fork_guard.worker_exiting()
        return code

    # -- the worker's life ----------------------------------------------------

    def run(self) -> int:
        self._reset_process()
        if self.spec.seed:
            return self._seed()
        self.control.start()
        hooks = self.spec.hooks
        try:
            hooks.run("after_fork", self.worker)
            target = self.spec.target or resolve(
                self.config.target, self.config.interface, self.config.factory
            )
            # Pools open once the target is known: an async target gets its pools
            # inside its event loop (the runner calls runtime.open_pools).
            if not target.is_async:
                self._open_pools()
            runner = runner_for(target.kind, self.config.http)
            if runner is None:
                raise TargetError(
                    f"target {target.spec!r} is a {target.kind.value} app, which this version cannot run"
                )
        except HookError as exc:
            log.error("hook failed", hook=exc.hook, exc_info=exc.original)
            return self._fail_boot(ExitCode.BOOT_FAILED, str(exc))
        except TargetError as exc:
            return self._fail_boot(ExitCode.TARGET, str(exc))
        except (WorkerBootError, ConfigError) as exc:
            return self._fail_boot(ExitCode.BOOT_FAILED, str(exc))

        def ready() -> None:
            hooks.run("worker_ready", self.worker)
            self.spec.heartbeat.beat()  # the master's first look after "ready" finds a fresh beat
            channel.send(self.spec.report_fd, channel.READY, target.kind.value)
            report_pools(self.spec.report_fd)

        try:
            code = runner(target, Runtime(self.worker, ready, self._unreachable))
        except StoppedBeforeReady:
            fork_guard.worker_exiting()
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
        hooks.run("worker_exit", self.worker)
        fork_guard.worker_exiting()
        if self.worker.molding and code == 0:
            return self._become_mold(target)
        return code

    def _seed(self) -> int:
        """The mold of generation 0 (--preload with reforking): the target is
        imported here, not in the master, so that once every worker descends
        from a later mold no process holds a copy of the app that nobody shares."""
        from supervisor.http import engines
        from supervisor.worker.mold import Mold, MoldRefused, end_on_stop_signals, quiesce

        end_on_stop_signals()  # from now on, even mid-import
        if self._stop_recorded():
            return 0
        try:
            target = resolve(self.config.target, self.config.interface, self.config.factory)
            engines.warm(self.config.http, target.kind)
            log.info("target preloaded in the mold", kind=target.kind.value)
            quiesce(self.spec)
        except TargetError as exc:
            return self._fail_boot(ExitCode.TARGET, str(exc))
        except MoldRefused as exc:  # a thread the import started: no fork would carry it
            log.error(
                "the app cannot be preloaded in a mold; the master preloads it (--refork-after off "
                "does so from the start)",
                reason=str(exc),
            )
            channel.send(self.spec.report_fd, channel.NOMOLD, str(exc))
            return 0
        spec = self.spec
        own = [spec.report_fd, spec.command_fd, self._wake_r, self._wake_w]
        return Mold(spec, target, 0, own, run_worker).serve()

    def _stop_recorded(self) -> bool:
        """A stop signal arrived between the fork and now (the handlers of
        ``_reset_process`` wrote its number into the wake-up pipe)."""
        readable, _, _ = select.select([self._wake_r], [], [], 0)
        stops = (*STOP, signal.SIGQUIT)
        return bool(readable) and any(sig in stops for sig in os.read(self._wake_r, 64))

    def _become_mold(self, target: Target) -> int:
        """Promoted: its requests are done and its pools closed; fork from now on."""
        from supervisor.worker.mold import Mold, MoldNotNow, MoldRefused, quiesce

        self.control.finish()
        try:
            quiesce(self.spec)
        except MoldNotNow as exc:
            # a slow request, not a property of the app: the master promotes another later
            log.warning("cannot become the mold now; exiting instead", reason=str(exc))
            return 0
        except MoldRefused as exc:
            log.error("cannot become the mold; exiting instead", reason=str(exc))
            channel.send(self.spec.report_fd, channel.NOMOLD, str(exc))  # the next one would not either
            return 0
        spec = self.spec
        own = [spec.report_fd, spec.command_fd, self._wake_r, self._wake_w]
        return Mold(spec, target, spec.generation + 1, own, run_worker).serve()


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
