"""The master's whole view of one worker process: its state, its pipes, its
one deadline, and how it is asked to stop and then made to.

A handle is the same object whether the master forked the worker or adopted it
from the previous image after a ``--preload`` re-exec; it acts on the process
only through the :class:`~supervisor.master.forker.Processes` seam, so the
rules here are tested without forking.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from supervisor.logging import get_logger
from supervisor.shared import channel, signals

if TYPE_CHECKING:
    from supervisor.master.processes import Processes, Spawned
    from supervisor.settings.config import Config

log = get_logger()

FAST_GRACE = 1.0  # seconds a worker gets after QUIT before SIGKILL
ABORT_GRACE = 1.0  # seconds between the stack-dump signal and SIGKILL
KILL_MARGIN = 1.0  # past --graceful-timeout: the worker exits itself first, then we KILL
PROMOTED = "promoted: becoming the mold"


class State(enum.StrEnum):
    BOOTING = "booting"  # forked, not ready yet
    READY = "ready"  # serving
    MOLD = "mold"  # serves nothing: new workers are forked from it (reforking)
    STOPPING = "stopping"  # asked to stop, or being killed for misbehaving (or promoted, draining)


class StopMode(enum.StrEnum):
    GRACEFUL = "graceful"  # finish in-flight work within --graceful-timeout
    FAST = "fast"  # QUIT now, KILL after FAST_GRACE


class Replacement(enum.StrEnum):
    """Why a worker is being replaced by one started beside it."""

    RELOAD = "reload"  # HUP: a failed boot aborts the whole reload
    RECYCLE = "recycle"  # limits, health: a failed boot keeps the running worker


@dataclass(eq=False)
class WorkerHandle:
    slot: int
    pid: int
    heartbeat: channel.Heartbeat
    report_fd: int  # worker -> master lines ("ready", "error ..."); -1 when closed or adopted
    spawned_at: float
    command_fd: int = -1  # master -> worker lines ("retire"); -1 when there is none
    adopted: bool = False  # a worker of the previous image, kept across a re-exec
    # the mold of generation 0 importing a preloaded app: no --boot-timeout, as the
    # master's own import had none before reforking moved it there
    preloading: bool = False
    ready_at: float | None = None
    stop_reason: str | None = None  # why the master asked it to stop
    failure: str | None = None  # why the master is killing it
    kill_at: float | None = None  # SIGKILL then, whatever it is doing
    error: tuple[int, str] | None = None  # what it reported before exiting
    replacing: WorkerHandle | None = None  # the worker it takes over from once ready
    replacement: Replacement = Replacement.RELOAD
    retire_reason: str = "reload"  # the stop reason of the worker it replaces, for the log
    reader: channel.LineReader = field(default_factory=channel.LineReader)
    pool: dict[str, object] | None = None  # its last pool report (supervise status)
    pool_at: float = 0.0
    beat_seen: float = 0.0  # its last heartbeat reading that can be one (see last_sign)
    generation: int = 0  # 0: forked by the master; N: by the mold of generation N
    molded_at: float | None = None  # when it became the mold
    serves: bool = False  # an HTTP app (its ready line says): exiting unasked is a crash, not "finished"
    killed: bool = False  # the master sent it SIGKILL (a stop past its grace, a stuck worker)

    @classmethod
    def forked(
        cls,
        slot: int,
        spawned: Spawned,
        now: float,
        replacing: WorkerHandle | None,
        why: Replacement,
        reason: str,
        generation: int,
    ) -> WorkerHandle:
        """The handle of a worker just forked (by the master or the mold)."""
        return cls(
            slot,
            spawned.pid,
            spawned.heartbeat,
            spawned.report_fd,
            now,
            spawned.command_fd,
            replacing=replacing,
            replacement=why,
            retire_reason=reason,
            generation=generation,
        )

    def spawn_fields(self, waited: float) -> dict[str, object]:
        """What the "worker spawned" line says of it."""
        fields: dict[str, object] = {"worker": self.slot, "worker_pid": self.pid}
        if waited:
            fields["after_backoff_s"] = waited
        if self.replacing is not None:
            fields["replacing_pid"] = self.replacing.pid
        if self.generation:
            fields["generation"] = self.generation
        return fields

    @property
    def state(self) -> State:
        if self.stop_reason or self.failure:
            return State.STOPPING
        if self.molded_at is not None:
            return State.MOLD
        return State.READY if self.ready_at is not None else State.BOOTING

    # -- the one deadline rule (tick and next_wakeup both read it) ------------

    def last_sign(self) -> float:
        """When this worker last showed life: its heartbeat, but never earlier
        than its own ready time. A reading from before its spawn cannot be one
        of its beats (an unwritten or torn page, an adopted worker's empty
        one); the last reading that could be stands instead."""
        reading = self.heartbeat.last
        if reading >= self.spawned_at:
            self.beat_seen = reading
        return max(self.beat_seen, self.ready_at if self.ready_at is not None else self.spawned_at)

    def deadline(self, cfg: Config) -> float | None:
        """When the master must look at this worker again: its kill time when
        it is being stopped, else the end of its boot or heartbeat allowance."""
        if self.kill_at is not None:
            return self.kill_at
        if self.state is State.STOPPING:
            return None
        if self.ready_at is None:
            return self.spawned_at + cfg.boot_timeout if cfg.boot_timeout and not self.preloading else None
        return self.last_sign() + cfg.timeout if cfg.timeout else None  # a mold beats too

    def overdue(self, cfg: Config, now: float) -> str | None:
        """Why this worker must be aborted now (it is stuck), or None."""
        booting = self.state is State.BOOTING and not self.preloading
        if booting and cfg.boot_timeout and now - self.spawned_at >= cfg.boot_timeout:
            return f"did not become ready within {cfg.boot_timeout:g} s"
        if self.state in (State.READY, State.MOLD) and cfg.timeout:
            silent = now - self.last_sign()  # one reading: the decision and its message agree
            if silent >= cfg.timeout:
                return f"heartbeat timeout (none for {silent:.1f} s)"
        return None

    # -- stop escalation --------------------------------------------------------

    def _kill_by(self, deadline: float) -> None:
        self.kill_at = deadline if self.kill_at is None else min(self.kill_at, deadline)

    def stop(self, procs: Processes, mode: StopMode, now: float, graceful_timeout: float) -> None:
        """Shutdown: TERM (graceful) or QUIT (fast), then KILL at the grace's end."""
        self.stop_reason = self.stop_reason or "shutdown"
        if self.failure is None or mode is StopMode.FAST:
            procs.signal(self.pid, signal.SIGTERM if mode is StopMode.GRACEFUL else signal.SIGQUIT)
        self._kill_by(now + (graceful_timeout + KILL_MARGIN if mode is StopMode.GRACEFUL else FAST_GRACE))

    def retire(self, procs: Processes, reason: str, now: float, graceful_timeout: float) -> None:
        """Ask it to finish politely and exit: it is replaced, or scaled away."""
        if self.failure:
            return  # already being killed for misbehaving; keep that (earlier) deadline
        self.stop_reason = reason
        self._kill_by(now + graceful_timeout + KILL_MARGIN)
        procs.retire(self.pid, self.command_fd)

    def promote(self, procs: Processes, now: float, graceful_timeout: float) -> None:
        """Ask it to finish its work politely, then become the mold; killed if it
        is still draining when the grace ends (as a retired worker would be)."""
        self.stop_reason = PROMOTED
        self._kill_by(now + graceful_timeout + KILL_MARGIN)
        procs.promote(self.pid, self.command_fd)

    def call_off_promotion(self, procs: Processes, why: str, now: float, graceful_timeout: float) -> None:
        """A reload came while it drained to become the mold: stop it instead
        (TERM ends a promoted worker, and a mold, as it ends any worker)."""
        self.stop_reason = why
        procs.signal(self.pid, signal.SIGTERM)
        self._kill_by(now + graceful_timeout + KILL_MARGIN)

    def became_mold(self, now: float, generation: int) -> None:
        self.stop_reason, self.kill_at, self.pool = None, None, None  # it holds no pool any more
        self.molded_at, self.generation = now, generation

    def abort(self, procs: Processes, why: str, now: float) -> None:
        """It is stuck: have it dump its stacks, then kill it."""
        log.error(
            "worker stuck; dumping its stacks to stderr, then killing it",
            worker=self.slot,
            worker_pid=self.pid,
            reason=why,
        )
        self.failure = why
        self.kill_at = now + ABORT_GRACE
        procs.signal(self.pid, signals.DUMP)

    def kill_if_due(self, procs: Processes, now: float) -> bool:
        if self.kill_at is None or now < self.kill_at:
            return False
        if self.failure is None:
            log.warning("worker did not stop in time; killing", worker=self.slot, worker_pid=self.pid)
        self.kill_at = None
        self.killed = True
        procs.signal(self.pid, signal.SIGKILL)
        return True

    def died_promoted(self, exit_code: int | None) -> bool:
        """Promoted, it was killed by a signal the master did not send (the OOM
        killer): a crash, not the stop it was asked for. An exit of its own
        (it cannot be the mold, or it drained past its grace) stays a stop."""
        return self.stop_reason == PROMOTED and exit_code is None and not self.killed

    def note_pool(self, text: str, now: float) -> None:
        """Its ``pool`` line (JSON): kept for the next ``supervise status``."""
        try:
            pools = json.loads(text)
        except ValueError:
            return
        if isinstance(pools, dict):
            self.pool, self.pool_at = pools, now

    # -- pipes ------------------------------------------------------------------

    def close_fds(self) -> None:
        for name in ("report_fd", "command_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)
        self.heartbeat.close()


@dataclass(eq=False)
class Slot:
    """Worker id ``id``: at most one active worker, plus a replacement booting beside it."""

    id: int
    child: WorkerHandle | None = None
    pending: WorkerHandle | None = None
    streak: int = 0  # crashes in a row
    spawn_at: float = 0.0
    waited: float = 0.0  # the backoff its next spawn waited, for the log
    finished: bool = False  # its main returned: not refilled

    def release(self, handle: WorkerHandle) -> None:
        """``handle`` exited: it no longer holds this slot."""
        if self.child is handle:
            self.child = None
        if self.pending is handle:
            self.pending = None

    @property
    def empty(self) -> bool:
        """Nothing runs here and something should: a spawn is due at ``spawn_at``."""
        return self.child is None and self.pending is None and not self.finished
