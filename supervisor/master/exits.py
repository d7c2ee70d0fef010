"""What a worker's exit means: a requested stop, a failed replacement, a
failed boot, a finished ``main``, or a crash for the crash-loop policy
(crashes.py) to judge. Also a spawn that could not happen at all."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from supervisor.errors import CrashLoopError, ExitCode, HookError, TargetError, WorkerBootError
from supervisor.logging import get_logger
from supervisor.master.handle import Replacement, StopMode

if TYPE_CHECKING:
    from supervisor.master.handle import Slot, WorkerHandle
    from supervisor.master.rolling import Rollout
    from supervisor.master.view import MasterView

log = get_logger()


def judge(
    m: MasterView,
    rollout: Rollout,
    handle: WorkerHandle,
    exit_code: int | None,
    desc: str,
    worked: bool,
    now: float,
) -> None:
    """``handle`` exited (with ``exit_code``, None if a signal killed it; ``desc``
    says how, for the log) and is already out of its slot; ``worked``: it had
    reported work done."""
    slot = m.slots.get(handle.slot)
    if (handle.stop_reason is not None and handle.failure is None) or m.stopping:
        log.info(
            "worker exited", worker=handle.slot, worker_pid=handle.pid, reason=handle.stop_reason, status=desc
        )
    elif handle.replacing is not None:
        rollout.replacement_died(handle, handle.failure or (handle.error[1] if handle.error else desc))
    elif handle.ready_at is None:
        _boot_failed(m, handle, slot, desc, now)
    elif exit_code == 0 and handle.failure is None:
        log.info("worker finished: main returned", worker=handle.slot, worker_pid=handle.pid)
        if slot is not None:
            slot.finished = True
        if m.slots and all(s.finished for s in m.slots.values()):
            log.info("every worker finished")
            m.begin_stop(StopMode.GRACEFUL, "every worker finished")
    else:
        crashed(m, handle.slot, handle.pid, slot, handle.failure or desc, now - handle.ready_at, now, worked)


def _boot_failed(m: MasterView, handle: WorkerHandle, slot: Slot | None, desc: str, now: float) -> None:
    if handle.error is not None:
        code, message = handle.error
    else:
        code = ExitCode.BOOT_FAILED
        message = f"worker {handle.slot} {handle.failure or desc} before it was ready"
    if not m.booted:
        log.error(
            "worker failed to boot", worker=handle.slot, worker_pid=handle.pid, status=desc, error=message
        )
        m.fail(TargetError(message) if code == ExitCode.TARGET else WorkerBootError(message))
        return
    # never ready: it was never healthy, however long its boot took
    crashed(m, handle.slot, handle.pid, slot, f"failed to boot: {message}", 0.0, now)


def crashed(
    m: MasterView,
    worker: int,
    pid: int | None,
    slot: Slot | None,
    why: str,
    lived: float,
    now: float,
    worked: bool = False,
) -> None:
    """Worker ``worker`` (process ``pid``, None if it was never forked) died
    without being asked to: refill its slot as the crash-loop policy says."""
    if slot is None:
        return
    decision = m.policy.on_crash(slot.streak, lived, worked)
    slot.streak = decision.streak
    fields: dict[str, Any] = {"worker": worker, "status": why, "crashes_in_a_row": decision.streak}
    if pid is not None:
        fields["worker_pid"] = pid
    if decision.give_up:
        log.error("worker crashed", **fields)
        m.fail(
            CrashLoopError(
                f"worker {worker} crashed {decision.streak} times in a row (last: {why}); "
                f"giving up (--crash-limit {m.config.crash_limit})"
            )
        )
        return
    slot.spawn_at = now + decision.delay
    slot.waited = decision.delay
    log.warning("worker crashed", **fields, restart_in_s=decision.delay)


def spawn_failed(
    m: MasterView,
    rollout: Rollout,
    slot: Slot,
    now: float,
    replacing: WorkerHandle | None,
    why: Replacement,
    exc: Exception,
) -> None:
    """``before_fork`` failed, or ``fork()`` itself did (EAGAIN, ENOMEM)."""
    if isinstance(exc, HookError):
        log.error("hook failed", hook=exc.hook, exc_info=exc.original)
        if not m.booted:
            m.fail(WorkerBootError(str(exc)))
            return
        reason = str(exc)
    else:
        # the machine, not the worker: try again after the slot's backoff
        errno = getattr(exc, "errno", None)
        reason = f"fork failed: {os.strerror(errno) if errno else exc}"
        log.error("could not start a worker", worker=slot.id, error=reason)
    if replacing is None:
        crashed(m, slot.id, None, slot, reason, 0.0, now)
    elif why is Replacement.RELOAD:
        rollout.failed()
