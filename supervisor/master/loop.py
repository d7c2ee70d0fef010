"""The master: one single-threaded loop that owns every decision.

    run:   start (startup.py) -> arm signals -> loop -> close
    loop:  wait -> reap -> dispatch signals and messages -> tick:
           enforce each handle's deadline -> reconcile the slots with the config

Signal handlers do nothing in Python; ``signal.set_wakeup_fd`` writes each
signal's number into a pipe at C level, and the loop reads those bytes as its
signal queue. It sleeps in ``select`` on that pipe and on each worker's report
pipe until the nearest handle's deadline, so a death is reaped the moment
SIGCHLD arrives and an idle master does not poll.

Decisions are methods that take ``now`` and act on processes only through
:class:`~supervisor.master.forker.Processes`, so tests drive them without forking.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.context import MasterInfo, WorkerInfo, describe_exit
from supervisor.errors import ConfigError, HookError, SupervisorError
from supervisor.hooks import Hooks
from supervisor.logging import get_logger
from supervisor.master import commands, exits, rolling, startup, systemd
from supervisor.master.crashes import CrashPolicy
from supervisor.master.forker import Forker, MoldUnresponsive
from supervisor.master.handle import Replacement, Slot, State, StopMode, WorkerHandle
from supervisor.master.processes import Processes
from supervisor.master.refork import Reforker
from supervisor.master.rolling import Rollout
from supervisor.master.started import Started
from supervisor.master.wakeup import Wakeup
from supervisor.settings.config import Config
from supervisor.settings.declare import MAX_WORKERS
from supervisor.settings.workers import refork_schedule
from supervisor.shared import channel
from supervisor.target import Target
from supervisor.worker.spec import WorkerSpec

if TYPE_CHECKING:
    from supervisor.database.pools import Database

log = get_logger()


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
        self.reload_config = reload_config
        self.database = database
        self.procs: Processes = processes or Forker()
        self.started = Started()  # what start-up opened: listeners, servers, budget
        self.slots: dict[int, Slot] = {}
        self.children: dict[int, WorkerHandle] = {}  # every live worker, by pid
        self.stopping: StopMode | None = None
        self.error: SupervisorError | None = None
        self.booted = False
        self.policy = CrashPolicy(config.crash_limit, config.crash_reset)
        self.rollout = Rollout(self)
        self.refork = Reforker(self, refork_schedule(config, config.http))
        self.old_lifelines: list[int] = []  # after a re-exec: what the adopted workers watch
        self.clock = clock
        self.started_at = clock()
        self._signalled_stop = False  # a user's second TERM/INT makes the stop fast
        self._watchdog = systemd.watchdog_interval()
        self._next_watchdog = 0.0
        # set up by run(); absent in unit tests
        self.wakeup = Wakeup()  # opened by run(); unused in unit tests

    # -- running ----------------------------------------------------------------

    def run(self) -> None:
        """Start, supervise until stopped, clean up. Raises the error that ended
        the run (boot failure, crash loop, bad target...) after ``on_exit``."""
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("the supervisor must run in the main thread (it handles signals)")
        try:
            try:
                self.wakeup.open(startup.interrupt)
                self.take(startup.start(self))
                self.refork.follow(self.config, seed=self.started.mold_preloads)
                self.wakeup.arm()
            except startup.Interrupted as stop:
                log.info("stopped before any worker started", signal=stop.signal_name)
            except SupervisorError as exc:
                self.error = exc
            else:
                self._wait(0)  # a signal that arrived during start-up counts before any fork
                while True:
                    self.tick(self.clock())
                    if self.stopping and not self.children:
                        break
                    self._wait(self.next_wakeup(self.clock()))
        finally:
            self._close()
        if self.error is not None:
            raise self.error

    def _wait(self, timeout: float | None) -> None:
        # The wake-up pipe is drained before the reap, never after: a SIGCHLD
        # that lands between a reap and the drain would lose its byte, and a
        # child that died then would wait for the next deadline to be noticed.
        signals, ready = self.wakeup.wait(timeout)
        # Reap next: a worker that said "ready" and died in the same instant
        # must be judged by its death, its last words read as such.
        for pid, code in self.procs.reap():
            handle = self.children.get(pid)
            if handle is not None and handle.report_fd >= 0:
                self._read_reports(handle, alive=False)  # what it said before dying comes first
            self.on_exit(pid, code, self.clock())
        while signals:  # one at a time: a re-exec carries over the ones not yet acted on
            self.on_signal(signals.pop(0), self.clock())
        for fd, data in ready:
            if isinstance(data, WorkerHandle):
                if data.pid in self.children and data.report_fd == fd:
                    self._read_reports(data)
            elif self.started.control is not None and self.started.control.owns(data):
                self.started.control.on_event(data)
            elif self.started.health is not None:
                self.started.health.on_event(data)

    def _read_reports(self, handle: WorkerHandle, alive: bool = True) -> None:
        while True:
            try:
                data = os.read(handle.report_fd, 4096)
            except OSError:
                return
            if not data:
                self._unregister(handle)
                return
            for line in handle.reader.feed(data):
                self.on_message(handle.pid, line, self.clock(), alive)

    # -- what happened ------------------------------------------------------------

    def on_signal(self, signum: int, now: float) -> None:
        commands.on_signal(self, signum, now)

    def on_message(self, pid: int, line: str, now: float, alive: bool = True) -> None:
        """One line from a worker. ``alive=False``: its last words, read after it
        died; a 'ready' then only marks it as having booted (no promotion)."""
        handle = self.children.get(pid)
        if handle is None:
            return
        kind, _, text = line.partition(" ")
        if kind == channel.ERROR:
            handle.error = channel.parse_error(text)
        elif kind == channel.READY and handle.state is State.BOOTING:
            handle.serves = text in ("asgi", "wsgi")  # what it runs: a server is never done
            if not alive:
                handle.ready_at = now  # it did boot (so its death is a crash), but it is gone
            else:
                self._on_ready(handle, now)
        elif kind == channel.RECYCLE:
            self.rollout.recycle(handle, text or "asked by the worker", now)
        elif kind == channel.POOL:
            handle.note_pool(text, now)
        elif kind == channel.MOLD:
            self.refork.molded(handle, text, now)
        elif kind == channel.NOMOLD:
            self.refork.refused(handle, text)
        elif kind == channel.DUE:
            self.refork.tick(now)

    def _on_ready(self, handle: WorkerHandle, now: float) -> None:
        handle.ready_at = now
        log.info(
            "worker ready",
            worker=handle.slot,
            worker_pid=handle.pid,
            boot_s=round(now - handle.spawned_at, 4),
        )
        slot = self.slots.get(handle.slot)
        if slot is None:
            return
        old = handle.replacing
        if old is not None and slot.pending is handle:
            slot.child, slot.pending, handle.replacing = handle, None, None
            if old.pid in self.children:
                old.retire(self.procs, handle.retire_reason, now, self.config.graceful_timeout)
        self._check_booted(now)

    def _check_booted(self, now: float) -> None:
        if self.booted or not all(
            s.finished or (s.child and s.child.ready_at is not None) for s in self.slots.values()
        ):
            return
        self.booted = True
        systemd.notify("READY=1", f"STATUS={len(self.slots)} workers ready")
        self.rollout.retire_adopted(now)
        log.info("all workers ready", workers=len(self.slots), elapsed_s=round(now - self.started_at, 4))
        self.hooks.run("when_ready", self.info())

    def on_exit(self, pid: int, code: int, now: float) -> None:
        handle = self.children.pop(pid, None)
        if handle is None:
            return  # not ours (we may be PID 1 and inherit orphans)
        worked = handle.heartbeat.work > 0  # read before the shared page is unmapped
        self._unregister(handle)
        handle.close_fds()
        if self.old_lifelines and not any(h.adopted for h in self.children.values()):
            for fd in self.old_lifelines:
                os.close(fd)  # the previous image's workers are all gone
            self.old_lifelines = []
        sig = -code if code < 0 else None
        exit_code = code if code >= 0 else None
        desc = describe_exit(exit_code, sig)
        slot = self.slots.get(handle.slot)
        if slot is not None:
            slot.release(handle)
        self.hooks.run(
            "child_exit", WorkerInfo(handle.slot, pid, exit_code, sig, handle.stop_reason or handle.failure)
        )
        if self.refork.exited(handle, desc, now):
            return  # the mold: no slot of its own to judge
        self.apply(exits.judge(handle, exit_code, desc, worked, now, self._situation(slot)), slot)

    def _situation(self, slot: Slot | None) -> exits.Situation:
        return exits.Situation(slot, self.booted, bool(self.stopping), self.policy, self.config.crash_limit)

    def apply(self, verdict: exits.Verdict, slot: Slot | None) -> None:
        """Act on what exits.py decided about a worker's exit or failed spawn."""
        match verdict:
            case exits.ReplacementFailed():
                self.rollout.failed()
            case exits.Finished() if slot is not None:
                slot.finished = True
                if all(s.finished for s in self.slots.values()):
                    log.info("every worker finished")
                    self.begin_stop(StopMode.GRACEFUL, "every worker finished")
            case exits.Restart(at=at, delay=delay, streak=streak) if slot is not None:
                slot.streak, slot.spawn_at, slot.waited = streak, at, delay
            case exits.Fail(error=error, streak=streak):
                if slot is not None and streak is not None:
                    slot.streak = streak
                self.fail(error)

    # -- what the master does -------------------------------------------------------

    def take(self, started: Started) -> None:
        """Start-up's record becomes the master's: its servers, its budget, the
        previous image's workers (after a re-exec), and a slot per worker."""
        self.started, self.target = started, started.target
        self.children.update((handle.pid, handle) for handle in started.adopted)
        self.old_lifelines = list(started.old_lifelines)
        self.started_at = self.clock()
        self.slots.update((slot_id, Slot(slot_id)) for slot_id in range(1, self.config.workers + 1))

    def request_reload(self, now: float) -> None:
        """HUP, ``supervise reload``, a --reload change: replace every ready
        worker, one at a time, with the new code and settings (rolling.py);
        with --preload, re-execute the master."""
        if self.stopping or self.rollout.defer():
            return
        before, changed = self.config, dict[str, object]()
        if self.reload_config is not None:
            reread = rolling.reread(self.config, self.reload_config)
            if reread is None:
                return
            self.config, changed = reread
            self.policy = CrashPolicy(self.config.crash_limit, self.config.crash_reset)
            self.refork.follow(self.config)  # its settings may have changed
        if not self.run_hook("on_reload", self.info(), abort="reload aborted: hook failed"):
            return
        if self.config.preload:  # the mold goes only once the new code loads: it may be all we have
            self.rollout.reexec(lambda: self.refork.reset("reload: new code", now))  # returns if aborted
            return
        self.refork.reset("reload: new code", now)
        self.config = rolling.within_budget(self.config, before, len(self.slots), self.check_budget)
        self.rollout.begin(changed)

    def replacing(self) -> bool:
        """A replacement is booting beside its worker (a reload or recycle waits)."""
        return self.rollout.busy()

    def recycle(self, handle: WorkerHandle, reason: str, now: float) -> None:
        self.rollout.recycle(handle, reason, now)

    def user_stop(self, reason: str, fast: bool = False) -> None:
        """TERM or INT (or ``supervise stop``): graceful, unless ``fast`` or a
        stop was already asked for by a user (the second Ctrl-C). A stop the
        supervisor began itself (boot failure, all finished) does not count."""
        mode = StopMode.FAST if fast or self._signalled_stop else StopMode.GRACEFUL
        self._signalled_stop = True
        self.begin_stop(mode, reason)

    def fail(self, error: SupervisorError) -> None:
        """Record the error that ends the run (the first one wins) and stop."""
        if self.error is None:
            self.error = error
        self.begin_stop(StopMode.GRACEFUL, str(error))

    def begin_stop(self, mode: StopMode, reason: str) -> None:
        if self.stopping is StopMode.FAST or self.stopping is mode:
            return
        log.info("stopping", mode=mode.value, reason=reason, workers=len(self.children))
        systemd.notify("STOPPING=1", f"STATUS=stopping: {reason}")
        self.stopping = mode
        for listener in self.started.listeners:
            listener.close()  # the workers close theirs at once too: new clients are refused
        self.rollout.abort()
        now = self.clock()
        for handle in list(self.children.values()):
            handle.stop(self.procs, mode, now, self.config.graceful_timeout)

    def scale(self, workers: int) -> str | None:
        """Change the number of workers; the reason it was refused, if it was."""
        if self.stopping:
            return "the master is stopping"
        if workers > MAX_WORKERS:
            log.warning("scale-up refused", error=f"--workers is at most {MAX_WORKERS}")
            return f"--workers is at most {MAX_WORKERS}"
        if workers > self.config.workers:
            try:
                self.check_budget(workers)
            except ConfigError as exc:
                log.warning("scale-up refused", error=str(exc))
                return str(exc)
        log.info("scaling", workers_from=self.config.workers, workers_to=workers)
        self.config = replace(self.config, workers=workers)
        return None

    def check_budget(self, workers: int) -> None:
        """Raise ConfigError if ``workers`` workers could exceed the connection budget."""
        if self.started.budget is not None:
            self.started.budget.check(workers, self.config)

    def run_hook(self, name: str, context: object, *, abort: str) -> bool:
        """Run a hook whose failure cancels one action (logged as ``abort``)."""
        try:
            self.hooks.run(name, context)
        except HookError as exc:
            log.error(abort, hook=exc.hook, exc_info=exc.original)
            return False
        return True

    def tick(self, now: float) -> None:
        """Enforce every deadline, then make the set of workers match the config."""
        if self._watchdog is not None and now >= self._next_watchdog:
            systemd.notify("WATCHDOG=1")
            self._next_watchdog = now + self._watchdog
        self.started.tick(now, self.config)  # fleet lease, contract migrations: short-lived connections
        for handle in list(self.children.values()):
            if handle.kill_if_due(self.procs, now):
                continue
            why = handle.overdue(self.config, now)
            if why is not None:
                handle.abort(self.procs, why, now)
        if not self.stopping:
            self.target = self.refork.sow(now) or self.target  # (the master preloads if the mold failed)
            self._reconcile(now)
            self.refork.tick(now)

    def _reconcile(self, now: float) -> None:
        wanted = self.config.workers
        for slot_id in range(1, wanted + 1):
            self.slots.setdefault(slot_id, Slot(slot_id))
        for slot_id in [s for s in self.slots if s > wanted]:
            slot = self.slots.pop(slot_id)
            for handle in (slot.child, slot.pending):
                if handle is not None and handle.pid in self.children:
                    handle.retire(self.procs, "scaled down", now, self.config.graceful_timeout)
        self._check_booted(now)
        self.rollout.advance(now)
        failed = 0
        for slot in sorted(self.slots.values(), key=lambda s: s.id):
            if self.stopping:
                return  # a failed before_fork may have just begun a stop
            if slot.empty and now >= slot.spawn_at and self.refork.seeding is None:
                failed += self.spawn(slot, now) is None
        if failed and not self.booted:
            log.warning("workers could not be started; retrying with backoff", failed=failed, workers=wanted)

    def spawn(
        self,
        slot: Slot,
        now: float,
        replacing: WorkerHandle | None = None,
        why: Replacement = Replacement.RELOAD,
        reason: str = "reload",
    ) -> WorkerHandle | None:
        """Fork a worker for ``slot``: its worker, or its pending replacement
        beside ``replacing`` (which stops, for ``reason``, once it is ready).
        None if it could not be: the failure is handled as exits.py judges."""
        spec = self._spec(slot.id)
        try:
            self.hooks.run("before_fork", WorkerInfo(slot.id, None))
            spawned = self.procs.spawn(spec)
        except (HookError, OSError) as exc:
            if spec.mold_fd >= 0 and isinstance(exc, OSError):
                self.refork.fork_failed(now, unresponsive=isinstance(exc, MoldUnresponsive))
            self.apply(exits.spawn_failed(slot.id, replacing, why, exc, now, self._situation(slot)), slot)
            return None
        handle = WorkerHandle.forked(slot.id, spawned, now, replacing, why, reason, spec.generation)
        if replacing is None:
            slot.child = self._register(handle)
        else:
            slot.pending = self._register(handle)
        log.info("worker spawned", **handle.spawn_fields(slot.waited))
        slot.waited = 0.0
        return handle

    def fork_seed(self, now: float) -> WorkerHandle:
        """Fork the mold of generation 0 (refork.Reforker.sow); OSError if not."""
        spawned = self.procs.spawn(replace(self._spec(0), seed=True, mold_fd=-1, generation=0, refork_at=0))
        return self._register(WorkerHandle.forked(0, spawned, now, None, Replacement.RELOAD, "", 0))

    def _register(self, handle: WorkerHandle) -> WorkerHandle:
        self.children[handle.pid] = handle
        if handle.report_fd >= 0:
            self.wakeup.watch(handle.report_fd, handle)
        return handle

    def _spec(self, slot_id: int) -> WorkerSpec:
        return WorkerSpec(
            id=slot_id,
            config=self.config,
            hooks=self.hooks,
            target=self.target,
            lifeline_fd=self.wakeup.lifeline_r,
            close_fds=self.master_fds(),
            close_heartbeats=[h.heartbeat for h in self.children.values()],
            database=self.database,
            listeners=self.started.listeners,
            mold_fd=(mold_fd := self.refork.mold_fd()),
            generation=(generation := self.refork.generation if mold_fd >= 0 else 0),
            refork_at=self.refork.threshold(generation),
        )

    def next_wakeup(self, now: float) -> float | None:
        """Seconds until the nearest deadline, or None to sleep until a signal."""
        deadlines = [d for d in (h.deadline(self.config) for h in self.children.values()) if d is not None]
        if not self.stopping and self.refork.seeding is None:  # (its "mold" line wakes us)
            deadlines += [s.spawn_at for s in self.slots.values() if s.empty]
        if self._watchdog is not None:
            deadlines.append(self._next_watchdog)
        deadlines += self.started.deadlines()
        if self.refork.waiting():
            deadlines.append(self.refork.retry_at)
        if not deadlines:
            return None
        # a hair late, so the deadline has passed when we look again
        return max(0.0, min(deadlines) - now) + 0.001

    # -- views for hooks, health and logs --------------------------------------------

    def info(self, exit_code: int | None = None) -> MasterInfo:
        workers = tuple(
            WorkerInfo(h.slot, h.pid) for h in sorted(self.children.values(), key=lambda h: (h.slot, h.pid))
        )
        return MasterInfo(pid=os.getpid(), config=self.config, workers=workers, exit_code=exit_code)

    @property
    def reloading(self) -> bool:
        return self.rollout.reloading

    def ready_count(self) -> int:
        """Slots whose current worker is serving (a pending replacement does not count)."""
        return sum(1 for s in self.slots.values() if s.child is not None and s.child.ready_at is not None)

    # -- process plumbing (only in real runs) -----------------------------------

    def _close(self) -> None:
        self.wakeup.restore_signals()
        if self.started.member is not None:
            self.started.member.leave()  # its workers are gone: give the room back at once
        self.hooks.run("on_exit", self.info(int(self.error.exit_code) if self.error else 0))
        self.started.close()
        self.wakeup.close()

    def _unregister(self, handle: WorkerHandle) -> None:
        if handle.report_fd >= 0:
            self.wakeup.unwatch(handle.report_fd)
            os.close(handle.report_fd)
            handle.report_fd = -1

    def master_fds(self) -> list[int]:
        """Descriptors only the master may hold; a new worker closes them."""
        fds = [*self.wakeup.fds(), *self.old_lifelines, *self.started.fds()]
        for handle in self.children.values():
            fds += [handle.report_fd, handle.command_fd]
        return [fd for fd in fds if fd >= 0]
