"""Rolling replacement: a new worker is ready before the one it replaces is
asked to stop, and one slot is replaced at a time, so capacity never drops by
more than one worker.

Two things start replacements: a reload (HUP: every ready slot, in order) and
a recycle (one worker hit --max-requests or --max-worker-memory, or its pool
lost the database). With ``--preload`` a reload re-executes the master
instead (``reexec.py``): its old code cannot fork new code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.errors import ConfigError, SupervisorError
from supervisor.logging import get_logger
from supervisor.master import systemd
from supervisor.master.handle import Replacement, State, WorkerHandle
from supervisor.shared import reexec

if TYPE_CHECKING:
    from supervisor.master.view import RolloutView
    from supervisor.settings.config import Config

log = get_logger()


class Rollout:
    """The master's replacements in progress and waiting. It reads the master
    and asks it to spawn; the slots and the config stay the master's to change."""

    def __init__(self, master: RolloutView) -> None:
        self._m = master
        self.reload_queue: list[int] = []  # slot ids still to roll in this reload
        self.reloading = False  # from HUP until no slot is left to roll and none is pending
        self.reload_again = False  # a HUP arrived while a replacement was in progress
        self.recycle_queue: list[tuple[int, str]] = []  # (pid, reason), waiting their turn

    def busy(self) -> bool:
        """The one-at-a-time rule: a replacement is booting beside its worker."""
        return any(s.pending for s in self._m.slots.values())

    def recycle(self, handle: WorkerHandle, reason: str, now: float) -> None:
        m = self._m
        slot = m.slots.get(handle.slot)
        if m.stopping or slot is None or slot.child is not handle or handle.state is State.STOPPING:
            return
        if self.reloading or self.busy():
            if all(pid != handle.pid for pid, _ in self.recycle_queue):
                self.recycle_queue.append((handle.pid, reason))
            return
        log.info("recycling worker", worker=handle.slot, worker_pid=handle.pid, reason=reason)
        m.spawn(slot, now, replacing=handle, why=Replacement.RECYCLE, reason=f"recycled: {reason}")

    def defer(self) -> bool:
        """True if a reload must wait for the replacement in progress (it follows it)."""
        if self.reloading or self.busy():
            log.info("a replacement is in progress; the reload will follow it")
            self.reload_again = True
            return True
        return False

    def begin(self, changed: dict[str, object]) -> None:
        """Roll every slot whose worker is ready, one at a time (advance)."""
        m = self._m
        self.reload_queue = sorted(
            sid for sid, s in m.slots.items() if s.child is not None and s.child.ready_at is not None
        )
        self.reloading = True
        systemd.notify("RELOADING=1", systemd.monotonic_usec(), "STATUS=reloading")
        log.info("reloading", workers=len(self.reload_queue), changed=changed or None)

    def reexec(self, before: Callable[[], None]) -> None:
        """--preload: new code needs a new process image (shared/reexec.py).
        ``before`` runs once the new code is known to load (the mold retires)."""
        m = self._m
        error = m.procs.check_new_code(m.config.boot_timeout or 60.0)
        if error is not None:
            log.error(
                "reload aborted: the new code or configuration does not load; the running workers are kept",
                error=error,
            )
            return
        before()
        workers = [
            reexec.Adopted(h.pid, h.slot, h.command_fd) for h in m.children.values() if h.command_fd >= 0
        ]
        handover = reexec.Handover(
            [(lst.sock.fileno(), lst.address, lst.unix_path) for lst in m.started.listeners],
            [m.wakeup.lifeline_w, *m.old_lifelines],
            workers,
        )
        log.info(
            "re-executing the master to load new code; pid, sockets and workers are kept",
            workers=len(workers),
        )
        systemd.notify("RELOADING=1", systemd.monotonic_usec(), "STATUS=reloading (re-exec)")
        held = m.wakeup.hold_for_exec()
        try:
            m.procs.reexec(handover)  # does not return, unless it failed
        except OSError as exc:
            log.error("reload aborted: re-exec failed; the running workers are kept", error=str(exc))
            self.failed()
        finally:
            m.wakeup.release(held)  # still this image: what was held is delivered now

    def abort(self) -> None:
        self.reload_queue.clear()
        self.reloading = False
        self.reload_again = False

    def failed(self) -> None:
        """A reload gave up and the current workers keep serving: systemd was
        told RELOADING=1, and must hear READY=1 or the unit stays 'reloading'."""
        self.abort()
        systemd.notify(
            "READY=1", f"STATUS=reload failed; {self._m.ready_count()} workers serving the previous code"
        )

    def advance(self, now: float) -> None:
        """Start the next replacement if none is booting; notice a reload's end."""
        m = self._m
        while self.reload_queue and not self.busy():
            rolling = m.slots.get(self.reload_queue.pop(0))
            if rolling is None or rolling.child is None or rolling.child.state is not State.READY:
                continue  # scaled away, finished, crashed or stopping meanwhile: nothing to roll
            if m.spawn(rolling, now, replacing=rolling.child) is None:
                return  # before_fork failed; spawn aborted the reload
        if self.busy():
            return
        if self.reloading and not self.reload_queue:
            self.reloading = False
            log.info("reload complete")
            systemd.notify("READY=1", f"STATUS={len(m.slots)} workers ready (reloaded)")
        if self.reload_again and not m.stopping:
            self.reload_again = False
            m.request_reload(now)
            if self.reload_queue:
                self.advance(now)  # start now: the loop may not tick again soon
        while self.recycle_queue and not self.reloading and not self.busy():
            pid, reason = self.recycle_queue.pop(0)
            waiting = m.children.get(pid)
            if waiting is not None:
                self.recycle(waiting, reason, now)

    def retire_adopted(self, now: float) -> None:
        """The new image's workers are all ready: the previous image's may go."""
        m = self._m
        adopted = [h for h in m.children.values() if h.adopted]
        for handle in adopted:
            if handle.kill_at is None:
                handle.retire(m.procs, "reload (previous image)", now, m.config.graceful_timeout)
        if adopted:
            log.info("retiring the previous image's workers", workers=len(adopted))


def reread(current: Config, reload_config: Callable[[], Config]) -> tuple[Config, dict[str, object]] | None:
    """The configuration a reload runs with, and what changed; None (logged) if
    the file or environment no longer loads: the running workers are kept."""
    try:
        new = reload_config()
    except SupervisorError as exc:
        log.error("reload aborted: invalid configuration; the running workers are kept", error=str(exc))
        return None
    changed = {name: value for name, value, _ in new.describe() if getattr(current, name) != value}
    return replace(new, target=current.target), changed


def within_budget(new: Config, before: Config, workers: int, check: Callable[[int], None]) -> Config:
    """``new``, or, when its workers and pools would exceed the connection
    budget, ``new`` with today's ``workers`` and ``before``'s pool size."""
    try:
        check(new.workers)
    except ConfigError as exc:
        log.warning(
            "reload keeps the current number of workers and pool size: the new ones would "
            "exceed the connection budget",
            workers=workers,
            pool_max_size=before.pool_max_size,
            error=str(exc),
        )
        return replace(new, workers=workers, pool_max_size=before.pool_max_size)
    return new
