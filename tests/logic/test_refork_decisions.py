"""The master's side of reforking and of a worker's unasked exit, with fake
processes and a fake clock: what it decides when a promotion meets a stop,
when a worker cannot become the mold, when the mold does not answer. (Real
processes: processes/test_refork.py and test_refork_hostile.py.)"""

from __future__ import annotations

import signal

from test_master_decisions import Clock, FakeProcesses, boot, make, pid_of

from supervisor.master.handle import State, StopMode
from supervisor.master.loop import Master

PROMOTE = -2


class ReforkingProcesses(FakeProcesses):
    def promote(self, pid: int, command_fd: int) -> None:
        self.sent.append((pid, PROMOTE))

    def adopt_orphans(self) -> bool:
        return True


def reforking(schedule: tuple[int, ...] = (5,)) -> tuple[Master, ReforkingProcesses, Clock]:
    master, procs, clock = make(target="app:app")
    procs.__class__ = ReforkingProcesses
    master.refork.schedule = schedule
    boot(master, clock)
    return master, procs, clock  # type: ignore[return-value]


def promote_slot_1(master: Master, procs: ReforkingProcesses, clock: Clock) -> int:
    pid = pid_of(master, 1)
    master.children[pid].heartbeat.done = 10  # type: ignore[attr-defined]
    master.on_message(pid, "due", clock.t)
    assert (pid, PROMOTE) in procs.sent
    return pid


def test_a_worker_promoted_while_the_master_stops_is_stopped_not_made_the_mold():
    master, procs, clock = reforking()
    pid = promote_slot_1(master, procs, clock)
    master.begin_stop(StopMode.GRACEFUL, "test")
    handle = master.children[pid]
    kill_at = handle.kill_at
    master.on_message(pid, "mold 1", clock.t)  # its stop signal was lost while it quiesced
    assert handle.state is State.STOPPING and handle.kill_at == kill_at is not None
    assert procs.sent[-1] == (pid, signal.SIGTERM)
    assert master.refork.mold is None


def test_a_worker_that_cannot_be_the_mold_turns_reforking_off_once():
    master, procs, clock = reforking()
    pid = promote_slot_1(master, procs, clock)
    master.on_message(pid, "nomold threads still running: exporter", clock.t)
    assert not master.refork.enabled
    master.on_exit(pid, 0, clock.t)
    clock.t += 60  # long past the pause between promotions
    master.tick(clock.t)
    other = pid_of(master, 2)
    master.children[other].heartbeat.done = 100  # type: ignore[attr-defined]
    master.on_message(other, "due", clock.t)
    assert [s for s in procs.sent if s[1] == PROMOTE] == [(pid, PROMOTE)]  # never again


def test_a_mold_that_does_not_answer_is_retired_and_the_master_forks():
    master, procs, clock = reforking()
    pid = promote_slot_1(master, procs, clock)
    master.on_message(pid, "mold 1", clock.t)
    mold = master.refork.mold
    assert mold is not None and mold.state is State.MOLD
    master.refork.fork_failed(clock.t, unresponsive=True)
    assert master.refork.mold is None and mold.state is State.STOPPING
    assert master.refork.mold_fd() == -1  # the next spawn forks from the master


def test_an_http_worker_that_exits_0_unasked_is_replaced():
    master, procs, clock = make(target="app:app")
    master.tick(clock.t)
    for slot in master.slots.values():
        assert slot.child is not None
        master.on_message(slot.child.pid, "ready asgi", clock.t)
    spawned = len(procs.spawned)
    master.on_exit(pid_of(master, 1), 0, clock.t)  # a server has no "done"
    master.tick(clock.t)
    assert len(procs.spawned) == spawned + 1 and not master.slots[1].finished

    master, procs, clock = make()
    master.tick(clock.t)
    for slot in master.slots.values():
        assert slot.child is not None
        master.on_message(slot.child.pid, "ready main", clock.t)
    master.on_exit(pid_of(master, 1), 0, clock.t)  # main returned: done
    assert master.slots[1].finished


def test_a_promoted_worker_killed_from_outside_is_a_crash_but_not_one_the_master_killed():
    """The OOM killer may pick the worker being promoted: that is a crash of its
    slot (logged, counted), not the stop it was asked for. One the master itself
    killed for draining past its grace is a stop, as a retired worker's is."""
    from structlog.testing import capture_logs

    master, procs, clock = reforking()
    pid = promote_slot_1(master, procs, clock)
    with capture_logs() as logs:
        master.on_exit(pid, -signal.SIGKILL, clock.t)
    crashes = [e for e in logs if e["event"] == "worker crashed"]
    assert len(crashes) == 1 and crashes[0]["worker"] == 1
    assert "while becoming the mold" in crashes[0]["status"]
    master.tick(clock.t)
    assert master.slots[1].child is not None  # refilled
    assert master.refork.promoting is None

    master, procs, clock = reforking()
    pid = promote_slot_1(master, procs, clock)
    handle = master.children[pid]
    assert handle.kill_at is not None
    clock.t = handle.kill_at + 0.1
    master.tick(clock.t)
    assert (pid, signal.SIGKILL) in procs.sent
    with capture_logs() as logs:
        master.on_exit(pid, -signal.SIGKILL, clock.t)
    assert not [e for e in logs if e["event"] == "worker crashed"]
    assert [e for e in logs if e["event"] == "worker exited"]


def test_a_reload_during_a_promotion_calls_it_off_and_every_slot_serves_new_code():
    """HUP while a worker drains to become the mold: it is asked to stop (it
    would otherwise become a mold nobody tracks, holding its slot), and the
    slot is refilled with the new code like the others."""
    master, procs, clock = reforking()
    pid = promote_slot_1(master, procs, clock)
    master.on_signal(signal.SIGHUP, clock.t)
    assert procs.sent[-1] == (pid, signal.SIGTERM)
    assert master.refork.promoting is None
    master.on_message(pid, "mold 1", clock.t)  # too late: it had quiesced already
    assert master.refork.mold is None
    master.on_exit(pid, 0, clock.t)
    for _ in range(6):  # the rolling reload, one slot at a time
        master.tick(clock.t)
        for slot in master.slots.values():
            child = slot.child
            if child is not None and child.state is State.BOOTING:
                master.on_message(child.pid, "ready asgi", clock.t)
        for sent_pid, what in list(procs.sent):
            if sent_pid in master.children and what != PROMOTE and sent_pid != pid:
                master.on_exit(sent_pid, 0, clock.t)
    serving = {s.id: s.child.pid for s in master.slots.values() if s.child is not None}
    assert len(serving) == 2 and pid not in serving.values()
    assert all(master.children[p].state is State.READY for p in serving.values())
    assert master.error is None
