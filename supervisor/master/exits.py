"""What a worker's exit means: a requested stop, a failed replacement, a
failed boot, a finished ``main``, or a crash for the crash-loop policy
(crashes.py) to judge. Also a spawn that could not happen at all.

Judgement only: each function logs what it saw and returns a verdict, which
the master applies (``Master.apply``); nothing here changes the master's state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from supervisor.errors import (
    CrashLoopError,
    ExitCode,
    HookError,
    SupervisorError,
    TargetError,
    WorkerBootError,
)
from supervisor.logging import get_logger
from supervisor.master.handle import Replacement

if TYPE_CHECKING:
    from supervisor.master.crashes import CrashPolicy
    from supervisor.master.handle import Slot, WorkerHandle

log = get_logger()


@dataclass(frozen=True)
class Done:
    """Nothing to do: it was asked to stop, or a recycle's replacement failed
    (its worker keeps serving)."""


@dataclass(frozen=True)
class ReplacementFailed:
    """A reload's replacement could not start: the reload is aborted."""

    why: str


@dataclass(frozen=True)
class Finished:
    """``main`` returned: the slot is not refilled."""


@dataclass(frozen=True)
class Restart:
    """Refill the slot at ``at`` (``delay`` after now); ``streak``: crashes in a row."""

    at: float
    delay: float
    streak: int


@dataclass(frozen=True)
class Fail:
    """The run ends with ``error`` (``streak``: the slot's crashes in a row, for status)."""

    error: SupervisorError
    streak: int | None = None


Verdict = Done | ReplacementFailed | Finished | Restart | Fail


@dataclass(frozen=True)
class Situation:
    """What the master knows beside the exit itself."""

    slot: Slot | None  # the slot it served, None if scaled away
    booted: bool  # every first worker was ready once
    stopping: bool
    policy: CrashPolicy
    crash_limit: int


def judge(
    handle: WorkerHandle, exit_code: int | None, desc: str, worked: bool, now: float, at: Situation
) -> Verdict:
    """``handle`` exited (with ``exit_code``, None if a signal killed it; ``desc``
    says how, for the log) and is already out of its slot; ``worked``: it had
    reported work done."""
    asked = handle.stop_reason is not None and not handle.died_promoted(exit_code)
    if (asked and handle.failure is None) or at.stopping:
        log.info(
            "worker exited", worker=handle.slot, worker_pid=handle.pid, reason=handle.stop_reason, status=desc
        )
        return Done()
    if handle.replacing is not None:
        return _replacement_died(handle, handle.failure or (handle.error[1] if handle.error else desc))
    if handle.ready_at is None:
        return _boot_failed(handle, desc, now, at)
    if exit_code == 0 and handle.failure is None and not handle.serves:
        log.info("worker finished: main returned", worker=handle.slot, worker_pid=handle.pid)
        return Finished()
    why = handle.failure or (f"{desc} without being asked to stop" if exit_code == 0 else desc)
    if handle.died_promoted(exit_code):
        why = f"{desc} while becoming the mold"
    lived = now - handle.ready_at
    healthy = at.policy.healthy(lived, worked, stuck=handle.failure is not None)
    return crashed(handle.slot, handle.pid, why, lived, now, at, healthy)


def _replacement_died(handle: WorkerHandle, why: str) -> Verdict:
    """A replacement exited before it was ready: its worker keeps serving."""
    fields = {"worker": handle.slot, "worker_pid": handle.pid, "error": why}
    if handle.replacement is Replacement.RECYCLE:
        log.error("replacement failed to boot; the running worker is kept", **fields)
        return Done()
    log.error("reload aborted: new worker failed to boot; the running workers are kept", **fields)
    return ReplacementFailed(why)


def _boot_failed(handle: WorkerHandle, desc: str, now: float, at: Situation) -> Verdict:
    if handle.error is not None:
        code, message = handle.error
    else:
        code = ExitCode.BOOT_FAILED
        message = f"worker {handle.slot} {handle.failure or desc} before it was ready"
    if not at.booted:
        log.error(
            "worker failed to boot", worker=handle.slot, worker_pid=handle.pid, status=desc, error=message
        )
        return Fail(TargetError(message) if code == ExitCode.TARGET else WorkerBootError(message))
    # never ready: it was never healthy, however long its boot took
    return crashed(handle.slot, handle.pid, f"failed to boot: {message}", 0.0, now, at)


def crashed(
    worker: int,
    pid: int | None,
    why: str,
    lived: float,
    now: float,
    at: Situation,
    healthy: bool = False,
) -> Verdict:
    """Worker ``worker`` (process ``pid``, None if it was never forked) died
    without being asked to: refill its slot as the crash-loop policy says."""
    if at.slot is None:
        return Done()
    decision = at.policy.on_crash(at.slot.streak, lived, healthy)
    fields: dict[str, Any] = {"worker": worker, "status": why, "crashes_in_a_row": decision.streak}
    if pid is not None:
        fields["worker_pid"] = pid
    if decision.give_up:
        log.error("worker crashed", **fields)
        error = CrashLoopError(
            f"worker {worker} crashed {decision.streak} times in a row (last: {why}); "
            f"giving up (--crash-limit {at.crash_limit})"
        )
        return Fail(error, decision.streak)
    log.warning("worker crashed", **fields, restart_in_s=decision.delay)
    return Restart(now + decision.delay, decision.delay, decision.streak)


def spawn_failed(
    slot_id: int, replacing: WorkerHandle | None, why: Replacement, exc: Exception, now: float, at: Situation
) -> Verdict:
    """``before_fork`` failed, or ``fork()`` itself did (EAGAIN, ENOMEM)."""
    if isinstance(exc, HookError):
        log.error("hook failed", hook=exc.hook, exc_info=exc.original)
        if not at.booted:
            return Fail(WorkerBootError(str(exc)))
        reason = str(exc)
    else:
        # the machine, not the worker: try again after the slot's backoff
        errno = getattr(exc, "errno", None)
        text = getattr(exc, "strerror", None) or (os.strerror(errno) if errno else str(exc))
        reason = f"fork failed: {text}"
        log.error("could not start a worker", worker=slot_id, error=reason)
    if replacing is None:
        return crashed(slot_id, None, reason, 0.0, now, at)
    if why is Replacement.RELOAD:
        return ReplacementFailed(reason)
    return Done()
