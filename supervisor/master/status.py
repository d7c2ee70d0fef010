"""What the master tells about itself: /readyz's state and USR1's lines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.logging import get_logger
from supervisor.shared.channel import Load

if TYPE_CHECKING:
    from supervisor.master.handle import Slot, WorkerHandle
    from supervisor.master.view import MasterView

log = get_logger()


def health(m: MasterView) -> dict[str, object]:
    ready = m.ready_count()
    member = m.started.member
    shedding = overloaded_workers(m)
    body: dict[str, object] = {
        "ready": m.booted and not m.stopping and ready > 0,
        "workers_ready": ready,
        "workers": m.config.workers,
        "reloading": m.reloading,
        "stopping": bool(m.stopping),
        "migrations": m.started.migrations,
        # every serving worker refuses work past capacity: a balancer that reads the body
        # can steer away while it lasts (the status stays 200: see docs/overload.md)
        "overloaded": ready > 0 and shedding >= ready,
        "workers_overloaded": shedding,
    }
    if member is not None:  # this master's reservation in its fleet
        body["fleet"] = member.describe(m.clock())
    return body


def overloaded_workers(m: MasterView) -> int:
    """Serving workers whose managed queue is overloaded now."""
    return sum(
        1
        for slot in m.slots.values()
        if slot.child is not None
        and slot.child.ready_at is not None
        and slot.child.heartbeat.load[Load.OVERLOADED]
    )


def workers(m: MasterView, now: float) -> list[dict[str, Any]]:
    """One row per worker, current ones by slot, then the rest (USR1, ``supervise status``)."""
    listed: list[tuple[WorkerHandle, Slot | None]] = []
    for slot_id in sorted(m.slots):
        slot = m.slots[slot_id]
        listed += [(h, slot) for h in (slot.child, slot.pending) if h is not None]
    seen = {id(h) for h, _ in listed}
    listed += [(h, m.slots.get(h.slot)) for h in m.children.values() if id(h) not in seen]
    return [
        {
            "worker": handle.slot,
            "worker_pid": handle.pid,
            "state": handle.state.value,
            "age_s": round(now - handle.spawned_at, 3),
            "heartbeat_age_s": round(max(0.0, now - handle.last_sign()), 3),
            "work": handle.heartbeat.work,
            "crashes_in_a_row": owner.streak if owner else 0,
            "load": Load.read(handle.heartbeat.load),
        }
        for handle, owner in listed
    ]


def log_workers(m: MasterView, now: float) -> None:
    """USR1: one line per worker."""
    for row in workers(m, now):
        log.info("worker status", **row)
