"""The master's side of reforking and of a worker's unasked exit, with fake
processes and a fake clock: what it decides when a promotion meets a stop,
when a worker cannot become the mold, when the mold does not answer. (Real
processes: processes/test_refork.py and test_refork_hostile.py.)"""

from __future__ import annotations

import signal

import pytest
from test_master_decisions import RETIRE, Clock, FakeProcesses, boot, make, pid_of

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


class MoldingProcesses(ReforkingProcesses):
    """Gives every child a command socket, so a mold can be asked to fork."""

    def spawn(self, spec):  # type: ignore[no-untyped-def]
        spawned = super().spawn(spec)
        return spawned._replace(command_fd=spawned.pid)


def settle(master: Master, procs: ReforkingProcesses, clock: Clock, rounds: int = 8) -> None:
    """Tick; every booting child says ready, every retired one exits; all beat."""
    for _ in range(rounds):
        for handle in master.children.values():
            handle.heartbeat.beat(clock.t)
        master.tick(clock.t)
        for slot in master.slots.values():
            for child in (slot.child, slot.pending):
                if child is not None and child.state is State.BOOTING:
                    master.on_message(child.pid, "ready asgi", clock.t)
        for pid, what in list(procs.sent):
            handle = master.children.get(pid)
            if handle is not None and handle.state is State.STOPPING and what != PROMOTE:
                master.on_exit(pid, 0, clock.t)


def refork_once(**settings: object) -> tuple[Master, MoldingProcesses, Clock, int]:
    master, procs, clock = make(target="app:app", **settings)
    procs.__class__ = MoldingProcesses
    master.refork.schedule = (5,)
    boot(master, clock)
    mold = promote_slot_1(master, procs, clock)  # type: ignore[arg-type]
    master.on_message(mold, "mold 1", clock.t)
    settle(master, procs, clock)
    return master, procs, clock, mold  # type: ignore[return-value]


def test_the_mold_is_retired_once_its_generation_serves_every_slot():
    """An idle mold holds a private copy of every page its workers wrote: once
    nothing is left for it to fork, it goes, unless workers are expected to be
    replaced (--max-requests), when it stays to fork them warm."""
    master, procs, _, mold = refork_once()
    generations = [master.children[s.child.pid].generation for s in master.slots.values() if s.child]
    assert generations == [1, 1]
    assert master.refork.mold is None and mold not in master.children  # retired, and it exited
    assert (mold, RETIRE) in procs.sent and master.refork.mold_fd() == -1

    master, _, _, mold = refork_once(max_requests=10_000)
    assert master.refork.mold is not None and master.refork.mold.pid == mold
    assert master.refork.mold.state is State.MOLD


def test_a_cold_replacement_after_the_mold_retired_is_replaced_warm_by_a_new_promotion():
    master, procs, clock, _ = refork_once()
    warm = pid_of(master, 1)
    master.on_exit(pid_of(master, 2), -signal.SIGKILL, clock.t)  # a crash: the master forks it, cold
    settle(master, procs, clock)
    cold = pid_of(master, 2)
    assert master.children[cold].generation == 0
    promoted = [p for p, what in procs.sent if what == PROMOTE]
    assert len(promoted) == 1  # not at once: a burst of replacements may follow
    master.children[warm].heartbeat.done = 50  # type: ignore[attr-defined]
    clock.t += 11
    settle(master, procs, clock)
    promoted = [p for p, what in procs.sent if what == PROMOTE]
    assert promoted[-1] == warm  # the warm one, not the cold one
    master.on_message(warm, "mold 1", clock.t)
    assert master.refork.generation == 1  # kept
    settle(master, procs, clock)
    assert all(master.children[s.child.pid].generation == 1 for s in master.slots.values() if s.child)
    assert cold not in master.children and master.refork.mold is None  # replaced, then retired again


def test_with_no_worker_of_the_generation_left_the_schedule_starts_over():
    master, procs, clock, _ = refork_once()
    for slot in (1, 2):
        master.on_exit(pid_of(master, slot), -signal.SIGKILL, clock.t)
        settle(master, procs, clock)
    clock.t += 11  # the pause before a promotion
    settle(master, procs, clock)
    assert master.refork.generation == 0 and not master.refork.regrow
    assert not [p for p, what in procs.sent if what == PROMOTE and p in master.children]
    pid = pid_of(master, 1)
    master.children[pid].heartbeat.done = 10  # type: ignore[attr-defined]
    master.on_message(pid, "due", clock.t)
    assert procs.sent[-1] == (pid, PROMOTE)  # its schedule's first count again


def test_the_master_sleeps_while_the_mold_of_generation_0_imports_and_gives_it_time():
    """No busy loop on the empty slots it will not fill yet; no --boot-timeout
    for the import (the master's own --preload import never had one); once it
    is the mold, its heartbeat is what is watched."""
    master, procs, clock = make(target="app:app", preload=True)
    procs.__class__ = MoldingProcesses
    master.refork.schedule = (5,)
    master.refork._seed = master.refork._subreaper = True
    master.tick(clock.t)
    seed = master.refork.seeding
    assert seed is not None and seed.preloading and not procs.spawned[1:]  # no worker yet
    assert master.next_wakeup(clock.t) is None  # nothing to wait for but its report
    clock.t += 10 * master.config.boot_timeout
    assert seed.overdue(master.config, clock.t) is None
    master.on_message(seed.pid, "mold 0", clock.t)
    assert master.refork.mold is seed and seed.state is State.MOLD
    settle(master, procs, clock)  # every process beats now
    assert [master.children[s.child.pid].generation for s in master.slots.values() if s.child] == [0, 0]
    assert master.refork.mold is seed  # generation 0: kept until the first refork
    # its boot allowance is long past: what is watched is its heartbeat
    assert master.next_wakeup(clock.t) == pytest.approx(master.config.timeout + 0.001)


def test_a_reload_whose_new_code_does_not_load_keeps_the_mold():
    """--preload re-executes the master; if the new code fails its check the
    reload is aborted, and the mold (all the preloaded code there is) stays."""
    master, procs, _, mold = refork_once(preload=True, max_requests=10_000)
    master.request_reload(master.clock())  # FakeProcesses.check_new_code: it does not load
    assert master.refork.mold is not None and master.refork.mold.pid == mold
    assert master.refork.mold.state is State.MOLD and (mold, RETIRE) not in procs.sent


def test_a_cold_worker_is_never_promoted_as_a_mold_of_the_generation():
    master, procs, clock, _ = refork_once()
    master.refork.regrow, master.refork.retry_at = True, clock.t + 10  # as after a dead mold
    master.on_exit(pid_of(master, 1), -signal.SIGKILL, clock.t)
    settle(master, procs, clock)  # slot 1: a cold replacement serves
    master.children[pid_of(master, 1)].heartbeat.done = 50  # type: ignore[attr-defined]
    clock.t += 11
    for handle in master.children.values():
        handle.heartbeat.beat(clock.t)
    master.on_exit(pid_of(master, 2), -signal.SIGKILL, clock.t)
    master.tick(clock.t)  # slot 2's cold replacement boots: none of the generation is left
    assert not [p for p, what in procs.sent if what == PROMOTE and p in master.children]
    assert not master.refork.regrow
    settle(master, procs, clock)  # both serve: the schedule starts over
    assert master.refork.generation == 0
