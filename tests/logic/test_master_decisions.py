"""The master's decisions, driven without fork: a fake process table records
what the master asked for, and the tests play the workers' side."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
from dataclasses import replace

import pytest

from supervisor.errors import CrashLoopError, ExitCode, TargetError, WorkerBootError
from supervisor.hooks import Hooks
from supervisor.master import Master
from supervisor.master.crashes import CrashPolicy
from supervisor.master.handle import Slot, State, StopMode, WorkerHandle
from supervisor.master.processes import Spawned
from supervisor.settings.config import Config
from supervisor.shared import channel
from supervisor.shared.signals import DUMP as DUMP_SIGNAL
from supervisor.worker.child import WorkerSpec

RETIRE = -1  # stands for the "retire" command in FakeProcesses.sent


class FakeHeartbeat(channel.Heartbeat):
    def __init__(self) -> None:
        self._mm = self._last = self._work = None
        self.load = [0] * channel.Load.SIZE
        self.at = 0.0
        self.done = 0

    def beat(self, now: float | None = None) -> None:
        self.at = now or 0.0

    @property
    def last(self) -> float:
        return self.at

    @property
    def work(self) -> int:
        return self.done


class FakeProcesses:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.next_pid = 100
        self.sent: list[tuple[int, int]] = []
        self.spawned: list[tuple[int, int]] = []  # (slot, pid)

    def spawn(self, spec: WorkerSpec) -> Spawned:
        self.next_pid += 1
        self.spawned.append((spec.id, self.next_pid))
        hb = FakeHeartbeat()
        hb.at = self.clock()
        return Spawned(self.next_pid, -1, -1, hb)

    def signal(self, pid: int, sig: int) -> None:
        self.sent.append((pid, sig))

    def retire(self, pid: int, command_fd: int) -> None:
        self.sent.append((pid, RETIRE))

    def reap(self) -> list[tuple[int, int]]:
        return []

    def check_new_code(self, timeout: float) -> str | None:
        return "no re-exec in these tests"

    def reexec(self, handover: object) -> None:
        raise OSError("no re-exec in these tests")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(**settings: object) -> tuple[Master, FakeProcesses, Clock]:
    cfg = replace(
        Config(
            target="app:main",
            workers=2,
            timeout=10,
            boot_timeout=5,
            graceful_timeout=3,
            crash_limit=3,
            crash_reset=30,
        ),
        **settings,
    )
    clock = Clock()
    procs = FakeProcesses(clock)
    master = Master(cfg, Hooks(), processes=procs, clock=clock)
    for slot_id in range(1, cfg.workers + 1):
        master.slots[slot_id] = Slot(slot_id)
    master.started_at = clock.t
    return master, procs, clock


def pid_of(master: Master, slot: int) -> int:
    child = master.slots[slot].child
    assert child is not None
    return child.pid


def boot(master: Master, clock: Clock) -> None:
    master.tick(clock.t)
    for slot in list(master.slots.values()):
        if slot.child is not None and slot.child.ready_at is None:
            master.on_message(slot.child.pid, "ready", clock.t)


def test_initial_spawn_and_ready():
    master, procs, clock = make()
    master.tick(clock.t)
    assert [s for s, _ in procs.spawned] == [1, 2]
    assert not master.booted
    boot(master, clock)
    assert master.booted
    assert master.next_wakeup(clock.t) == pytest.approx(10.001)  # next heartbeat deadline


def test_no_deadline_means_sleep_until_a_signal():
    master, _, clock = make(timeout=0)
    boot(master, clock)
    assert master.next_wakeup(clock.t) is None


def test_exit_before_ready_is_a_boot_failure_even_when_several_fail():
    master, procs, clock = make(workers=3)
    master.tick(clock.t)
    for _, pid in procs.spawned:
        master.on_message(pid, "error 3 hook after_fork failed", clock.t)
    for _, pid in procs.spawned:
        master.on_exit(pid, 3, clock.t)
    assert isinstance(master.error, WorkerBootError)
    assert str(master.error) == "hook after_fork failed"
    assert master.stopping == "graceful"
    assert not master.children


def test_import_error_reported_by_a_worker_becomes_exit_4():
    master, procs, clock = make(workers=1)
    master.tick(clock.t)
    pid = procs.spawned[0][1]
    master.on_message(pid, "error 4 module 'app' has no attribute 'mian'", clock.t)
    master.on_exit(pid, 4, clock.t)
    assert isinstance(master.error, TargetError)
    assert master.error.exit_code == ExitCode.TARGET


def test_crash_after_ready_replaces_at_once_then_backs_off_then_gives_up():
    master, procs, clock = make(workers=1, crash_limit=2)
    boot(master, clock)
    master.on_exit(pid_of(master, 1), 1, clock.t)
    master.tick(clock.t)
    assert len(procs.spawned) == 2  # replaced immediately
    master.on_message(pid_of(master, 1), "ready", clock.t)
    master.on_exit(pid_of(master, 1), -9, clock.t)
    master.tick(clock.t)
    assert len(procs.spawned) == 2  # waiting out the backoff
    assert master.next_wakeup(clock.t) == pytest.approx(0.501)
    clock.t += 0.5
    master.tick(clock.t)
    assert len(procs.spawned) == 3
    master.on_message(pid_of(master, 1), "ready", clock.t)
    master.on_exit(pid_of(master, 1), 1, clock.t)
    assert isinstance(master.error, CrashLoopError)
    assert master.error.exit_code == 6


def test_a_long_healthy_run_forgives_earlier_crashes():
    policy = CrashPolicy(limit=3, reset_after=30)
    d = policy.on_crash(0, 1)
    d = policy.on_crash(d.streak, 1)
    d = policy.on_crash(d.streak, 1)
    assert (d.streak, d.delay, d.give_up) == (3, 1.0, False)
    d = policy.on_crash(d.streak, 31)
    assert (d.streak, d.delay, d.give_up) == (1, 0.0, False)
    assert CrashPolicy(limit=0, reset_after=30).on_crash(1000, 0).give_up is False
    assert CrashPolicy(limit=0, reset_after=30).on_crash(100, 0).delay == 30.0


def test_a_returned_main_is_not_refilled_and_all_finished_stops():
    master, procs, clock = make()
    boot(master, clock)
    master.on_exit(pid_of(master, 1), 0, clock.t)
    master.tick(clock.t)
    assert len(procs.spawned) == 2 and master.stopping is None
    master.on_exit(pid_of(master, 2), 0, clock.t)
    assert master.stopping == "graceful" and master.error is None


def test_stuck_worker_gets_a_stack_dump_then_kill():
    master, procs, clock = make(workers=1)
    boot(master, clock)
    pid = pid_of(master, 1)
    clock.t += 10
    master.tick(clock.t)
    assert procs.sent == [(pid, DUMP_SIGNAL)]
    clock.t += 1
    master.tick(clock.t)
    assert procs.sent[-1] == (pid, signal.SIGKILL)
    master.on_exit(pid, -9, clock.t)
    master.tick(clock.t)
    assert len(procs.spawned) == 2 and master.error is None


def test_boot_timeout_kills_and_fails_the_start():
    master, procs, clock = make(workers=1)
    master.tick(clock.t)
    pid = procs.spawned[0][1]
    clock.t += 5
    master.tick(clock.t)
    assert procs.sent == [(pid, DUMP_SIGNAL)]
    master.on_exit(pid, -9, clock.t)
    assert isinstance(master.error, WorkerBootError)
    assert "did not become ready within 5 s" in str(master.error)


def test_term_is_graceful_and_a_second_one_is_fast():
    master, procs, clock = make()
    boot(master, clock)
    pids = [pid_of(master, 1), pid_of(master, 2)]
    master.on_signal(signal.SIGTERM, clock.t)
    assert procs.sent == [(p, signal.SIGTERM) for p in pids]
    assert master.next_wakeup(clock.t) == pytest.approx(3 + 1 + 0.001)
    master.on_signal(signal.SIGINT, clock.t)
    assert procs.sent[2:] == [(p, signal.SIGQUIT) for p in pids]
    clock.t += 1
    master.tick(clock.t)
    assert procs.sent[4:] == [(p, signal.SIGKILL) for p in pids]


def test_rolling_reload_one_slot_at_a_time():
    master, procs, clock = make()
    boot(master, clock)
    old = {1: pid_of(master, 1), 2: pid_of(master, 2)}
    master.on_signal(signal.SIGHUP, clock.t)
    master.tick(clock.t)
    assert procs.spawned[-1][0] == 1 and len(procs.spawned) == 3
    master.tick(clock.t)
    assert len(procs.spawned) == 3  # slot 2 waits until slot 1's replacement is ready
    assert procs.sent == []  # nothing retired before its replacement is ready
    master.on_message(procs.spawned[-1][1], "ready", clock.t)
    assert procs.sent == [(old[1], RETIRE)]
    master.tick(clock.t)
    assert procs.spawned[-1][0] == 2
    master.on_message(procs.spawned[-1][1], "ready", clock.t)
    assert procs.sent[-1] == (old[2], RETIRE)
    master.on_exit(old[1], 0, clock.t)
    master.on_exit(old[2], 0, clock.t)
    master.tick(clock.t)
    assert len(procs.spawned) == 4 and master.error is None


def test_reload_aborts_when_the_replacement_fails_to_boot(tmp_path, monkeypatch):
    import socket

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    master, procs, clock = make()
    boot(master, clock)
    old = pid_of(master, 1)
    master.on_signal(signal.SIGHUP, clock.t)
    master.tick(clock.t)
    new = procs.spawned[-1][1]
    master.on_exit(new, 4, clock.t)
    master.tick(clock.t)
    assert pid_of(master, 1) == old and len(procs.spawned) == 3
    assert procs.sent == [] and master.error is None
    messages = []
    with contextlib.suppress(BlockingIOError):
        while True:
            messages.append(notify.recv(4096).decode())
    notify.close()
    # systemd heard the reload begin, then that the unit is ready again
    assert [m.split("\n")[0] for m in messages] == ["READY=1", "RELOADING=1", "READY=1"]
    assert messages[-1] == "READY=1\nSTATUS=reload failed; 2 workers serving the previous code"


def test_ttin_and_ttou():
    master, procs, clock = make()
    boot(master, clock)
    master.on_signal(signal.SIGTTIN, clock.t)
    master.tick(clock.t)
    assert procs.spawned[-1][0] == 3
    third = procs.spawned[-1][1]
    master.on_signal(signal.SIGTTOU, clock.t)
    master.tick(clock.t)
    assert procs.sent == [(third, RETIRE)]
    assert sorted(master.slots) == [1, 2]


def test_boot_failures_after_start_count_toward_the_crash_limit():
    master, procs, clock = make(workers=1, crash_limit=2, crash_reset=30, boot_timeout=60)
    boot(master, clock)
    master.on_exit(pid_of(master, 1), -9, clock.t)
    for _ in range(3):  # replacements that take long to fail still count
        clock.t += 100
        master.tick(clock.t)
        pid = procs.spawned[-1][1]
        clock.t += 45
        master.on_exit(pid, 3, clock.t)
    assert isinstance(master.error, CrashLoopError)


def test_hup_during_a_recycle_is_not_lost():
    master, procs, clock = make()
    boot(master, clock)
    first = master.slots[1].child
    assert first is not None
    master.rollout.recycle(first, "database unreachable", clock.t)
    master.on_signal(signal.SIGHUP, clock.t)  # deferred behind the recycle
    master.on_message(procs.spawned[-1][1], "ready", clock.t)
    master.tick(clock.t)
    assert procs.spawned[-1][0] == 1 and len(procs.spawned) == 4  # the reload began
    master.on_message(procs.spawned[-1][1], "ready", clock.t)
    master.tick(clock.t)
    master.on_message(procs.spawned[-1][1], "ready", clock.t)
    master.tick(clock.t)
    assert not master.rollout.reloading and len(procs.spawned) == 5


def test_a_stuck_worker_keeps_its_kill_deadline_when_retired():
    master, _procs, clock = make(workers=1)
    boot(master, clock)
    pid = pid_of(master, 1)
    clock.t += 10
    master.tick(clock.t)  # heartbeat timeout: dump, then KILL in 1 s
    child = master.children[pid]
    kill_at = child.kill_at
    child.retire(master.procs, "scaled down", clock.t, master.config.graceful_timeout)
    assert child.kill_at == kill_at


def test_ready_from_a_worker_being_killed_does_not_count():
    master, procs, clock = make(workers=1)
    master.tick(clock.t)
    pid = procs.spawned[0][1]
    clock.t += 5
    master.tick(clock.t)  # boot timeout
    master.on_message(pid, "ready", clock.t)
    assert not master.booted
    master.on_exit(pid, -9, clock.t)
    assert isinstance(master.error, WorkerBootError)


def test_the_first_term_after_an_internal_stop_is_still_graceful():
    master, _procs, clock = make(workers=1)
    boot(master, clock)
    master.on_exit(pid_of(master, 1), 0, clock.t)  # main returned: the master stops itself
    assert master.stopping == "graceful"
    master.on_signal(signal.SIGTERM, clock.t)
    assert master.stopping == "graceful"
    master.on_signal(signal.SIGTERM, clock.t)
    assert master.stopping == "fast"


def test_recycles_go_one_at_a_time():
    master, procs, clock = make()
    boot(master, clock)
    one, two = master.slots[1].child, master.slots[2].child
    assert one is not None and two is not None
    master.rollout.recycle(one, "max requests (5)", clock.t)
    master.rollout.recycle(two, "max requests (5)", clock.t)
    assert len(procs.spawned) == 3  # the second waits its turn
    master.on_message(procs.spawned[-1][1], "ready", clock.t)
    master.tick(clock.t)
    assert len(procs.spawned) == 4 and procs.spawned[-1][0] == 2
    assert procs.sent == [(one.pid, RETIRE)]


def test_a_child_dying_while_the_master_wakes_is_not_missed():
    """Two workers exit together; the second one's SIGCHLD lands just after the
    reap of the first. Its wake-up byte must survive, or the master sleeps
    through that death until its next deadline (none here: forever)."""
    master, _, clock = make(timeout=0)
    boot(master, clock)
    master.begin_stop(StopMode.GRACEFUL, "test")
    first, second = pid_of(master, 1), pid_of(master, 2)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    master.wakeup.wake_r = wake_r
    master.wakeup.selector = selectors.DefaultSelector()
    master.wakeup.selector.register(wake_r, selectors.EVENT_READ, None)
    exited = [first]

    def reap() -> list[tuple[int, int]]:
        out = [(pid, 0) for pid in exited]
        if first in exited:  # the second worker dies right after this reap
            exited[:] = [second]
            os.write(wake_w, bytes([signal.SIGCHLD]))
        else:
            exited.clear()
        return out

    master.procs.reap = reap  # type: ignore[method-assign]
    try:
        os.write(wake_w, bytes([signal.SIGCHLD]))  # the first worker's death
        master._wait(None)
        assert first not in master.children
        assert select.select([wake_r], [], [], 0)[0] == [wake_r], "the second SIGCHLD was swallowed"
        master._wait(5.0)
        assert not master.children
    finally:
        master.wakeup.selector.close()
        os.close(wake_r)
        os.close(wake_w)


# -- the worker handle: one deadline rule, one escalation ------------------------


def test_handle_deadline_follows_its_state():
    cfg = Config(target="app:main", timeout=10, boot_timeout=5, graceful_timeout=3)
    hb = FakeHeartbeat()
    hb.at = 1000.0
    handle = WorkerHandle(1, 101, hb, -1, spawned_at=1000.0)
    assert handle.state is State.BOOTING and handle.deadline(cfg) == 1005.0
    assert handle.overdue(cfg, 1004.9) is None
    assert "did not become ready within 5 s" in (handle.overdue(cfg, 1005.0) or "")
    handle.ready_at = 1001.0
    # its last beat (1000.0) is older than its ready time: the allowance runs from being ready
    assert handle.state is State.READY and handle.deadline(cfg) == 1011.0
    assert handle.overdue(cfg, 1010.5) is None
    assert "heartbeat timeout" in (handle.overdue(cfg, 1011.0) or "")
    procs = FakeProcesses(Clock())
    handle.stop(procs, StopMode.GRACEFUL, 1002.0, cfg.graceful_timeout)
    assert handle.state is State.STOPPING and handle.overdue(cfg, 9999.0) is None
    assert handle.deadline(cfg) == 1002.0 + 3 + 1  # graceful timeout, then a margin
    assert procs.sent == [(101, signal.SIGTERM)]
    handle.stop(procs, StopMode.FAST, 1003.0, cfg.graceful_timeout)
    assert handle.deadline(cfg) == 1004.0  # fast: the earlier deadline wins
    assert not handle.kill_if_due(procs, 1003.9)
    assert handle.kill_if_due(procs, 1004.0)
    assert procs.sent[-1] == (101, signal.SIGKILL) and handle.kill_at is None


def test_next_wakeup_is_the_nearest_handle_deadline():
    master, _, clock = make(workers=2)
    boot(master, clock)
    clock.t += 5
    master.slots[1].child.heartbeat.beat(clock.t)  # type: ignore[union-attr]
    master.slots[2].child.heartbeat.beat(clock.t - 4)  # type: ignore[union-attr]  # 1 s after ready
    assert master.next_wakeup(clock.t) == pytest.approx(6.001)


# -- external kills and failed forks (issue 11) ----------------------------------


def test_a_worker_killed_after_doing_work_is_replaced_at_once_every_time():
    """The OOM killer's case: a worker that booted and served is not a crash
    loop, however often it is killed; no backoff, never exit 6."""
    master, procs, clock = make(workers=1, crash_limit=2)
    boot(master, clock)
    for kill in range(10):
        _served(master, 1, 1000)
        master.on_exit(pid_of(master, 1), -9, clock.t)
        master.tick(clock.t)
        assert len(procs.spawned) == kill + 2, "replaced at once, without backoff"
        master.on_message(pid_of(master, 1), "ready", clock.t)
    assert master.error is None and not master.stopping


def test_a_worker_killed_before_doing_work_still_counts_as_a_crash():
    master, _, clock = make(workers=1, crash_limit=2)
    boot(master, clock)
    for _ in range(3):
        master.on_exit(pid_of(master, 1), -9, clock.t)
        clock.t += 60 if master.error is None else 0
        master.tick(clock.t)
        if master.error is None:
            master.on_message(pid_of(master, 1), "ready", clock.t)
    assert isinstance(master.error, CrashLoopError)


def test_a_failed_fork_is_retried_with_backoff_not_fatal():
    master, procs, clock = make(workers=2, crash_limit=5)
    real_spawn = procs.spawn
    failures = [1]

    def spawn(spec: WorkerSpec) -> Spawned:
        if spec.id == 2 and failures:
            failures.pop()
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_spawn(spec)

    procs.spawn = spawn  # type: ignore[method-assign]
    master.tick(clock.t)
    assert [s for s, _ in procs.spawned] == [1] and master.error is None
    master.tick(clock.t)
    assert [s for s, _ in procs.spawned] == [1, 2], "the first retry is immediate"
    assert master.error is None and not master.stopping


def _served(master: Master, slot: int, n: int) -> None:
    child = master.slots[slot].child
    assert child is not None
    child.heartbeat = _Worked(n)


class _Worked(FakeHeartbeat):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.done = n


# -- healthy workers misjudged (issue 21) -----------------------------------------


def test_a_ready_worker_is_never_judged_by_a_beat_older_than_its_spawn():
    """A heartbeat page read as 0.0 (the old writer zeroed it mid-write) made a
    worker ready for 76 ms look silent for the machine's whole uptime."""
    master, procs, clock = make(workers=1)
    boot(master, clock)
    child = master.slots[1].child
    assert child is not None and isinstance(child.heartbeat, FakeHeartbeat)
    child.heartbeat.at = 0.0  # what a torn (or unwritten) page reads
    clock.t += 0.076
    master.tick(clock.t)
    assert procs.sent == [], "a healthy worker was judged stuck"
    assert master.next_wakeup(clock.t) == pytest.approx(10 - 0.076 + 0.001)
    child.heartbeat.at = clock.t  # a real beat counts again
    clock.t += 9.9
    master.tick(clock.t)
    assert procs.sent == []
    clock.t += 0.2  # now 10.1 s since its last real beat: stuck indeed
    master.tick(clock.t)
    assert procs.sent == [(child.pid, DUMP_SIGNAL)]


def test_a_heartbeat_write_that_fails_halfway_leaves_the_last_beat():
    hb = channel.Heartbeat()
    try:
        before = hb.last
        with pytest.raises(TypeError):
            hb.beat("not a time")  # type: ignore[arg-type]
        assert hb.last == before, "a failed write left the page torn"
        hb.add_work(3)
        assert (hb.last, hb.work) == (before, 3), "counting work rewrote the beat"
    finally:
        hb.close()
    assert (hb.last, hb.work) == (0.0, 0)


def test_an_idle_ready_worker_killed_every_2_s_is_not_a_crash_loop():
    """Under keep-alive load a killed worker's replacement serves nothing: its
    clients all went to the other worker. Killed every 2 s, it used to count
    as a crash each time and the master gave up (exit 6) in about 14 s."""
    master, _procs, clock = make(workers=2, crash_limit=5, crash_reset=30, timeout=60)
    boot(master, clock)
    for _ in range(10):  # 20 s, a kill every 2 s
        clock.t += 0.3  # boot time
        master.tick(clock.t)
        child = master.slots[1].child
        if child is not None and child.ready_at is None:
            master.on_message(child.pid, "ready", clock.t)
        clock.t += 1.7
        master.tick(clock.t)
        victim = master.slots[1].child
        if victim is not None:
            master.on_exit(victim.pid, -signal.SIGKILL, clock.t)
    assert master.error is None and not master.stopping
    assert master.slots[1].streak == 0


def test_a_worker_dying_right_after_ready_is_still_a_crash_loop():
    master, _procs, clock = make(workers=1, crash_limit=3, crash_reset=30)
    for _ in range(10):
        master.tick(clock.t)
        child = master.slots[1].child
        if child is None:
            clock.t += 0.5
            continue
        master.on_message(child.pid, "ready", clock.t)
        clock.t += 0.2  # dies 0.2 s after becoming ready, having done nothing
        master.on_exit(child.pid, 1, clock.t)
        if master.error is not None:
            break
        clock.t = master.slots[1].spawn_at
    assert isinstance(master.error, CrashLoopError)


def test_a_worker_killed_as_stuck_still_counts_however_long_it_lived():
    policy = CrashPolicy(limit=3, reset_after=30)
    assert policy.healthy(5.0, worked=False, stuck=False)
    assert not policy.healthy(5.0, worked=False, stuck=True)
    assert not policy.healthy(0.5, worked=False, stuck=False)
    assert policy.healthy(0.5, worked=True, stuck=True)
    assert not CrashPolicy(limit=3, reset_after=0.2).healthy(0.0, worked=False, stuck=False)
