"""Reforking when things go wrong on purpose (real processes): a mold that
stops answering mid-spawn, a worker that cannot become the mold, a stop that
arrives while a worker is being promoted. The service must keep every slot
filled and the master must keep its word on exits."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from conftest import RawConnection, Run, alive, free_port, wait_until


def start(
    supervise, *extra: str, workers: int = 2, env: dict[str, str] | None = None, ready: bool = True
) -> tuple[Run, int]:
    """``ready``: wait until every worker is ready before returning."""
    port = free_port()
    run = supervise(
        "asgiapp:app",
        "-w",
        str(workers),
        "--preload",
        "--no-fleet",
        "-b",
        f"127.0.0.1:{port}",
        *extra,
        env=env,
    )
    if ready:
        run.wait_ready(workers)
    return run, port


def get(port: int, path: str = "/") -> int:
    """One request; the pid of the worker that answered."""
    conn = RawConnection(port, timeout=15)
    try:
        conn.send(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        answer = conn.read_response()
    finally:
        conn.close()
    assert answer.status == 200, answer
    return int(answer.body.decode().split()[0].removeprefix("pid="))


def drive(port: int, n: int) -> set[int]:
    return {get(port) for _ in range(n)}


def serving(run: Run) -> dict[int, int]:
    """worker id -> pid of each slot's live worker, by the log."""
    exited = {e.get("worker_pid") for e in (*run.find("worker exited"), *run.find("worker crashed"))}
    return {slot: pid for slot, pid in run.ready_pids().items() if pid not in exited}


def test_a_mold_that_stops_answering_is_retired_and_every_slot_is_refilled(supervise):
    # --max-requests (never reached) keeps the mold once its generation is complete
    run, port = start(supervise, "--refork-after", "20", "--max-requests", "1000000")
    drive(port, 60)
    (ready,) = run.wait_event("mold ready", generation=1, timeout=20)
    mold = ready["pid"]
    run.wait_event("worker exited", reason="recycled: refork: generation 1 is ready", timeout=20)
    generation_1 = wait_until(lambda: len(serving(run)) == 2 and serving(run), timeout=20, what="2 workers")
    os.kill(mold, signal.SIGSTOP)  # the mold cannot answer: the master's spawn times out
    try:
        victim = generation_1[1]
        os.kill(victim, signal.SIGKILL)
        run.wait_event("mold did not answer; retiring it", timeout=15)
    finally:
        os.kill(mold, signal.SIGCONT)  # its late answer must not be taken for another spawn's
    # slot 1 is refilled by the master itself, and both slots serve
    refilled = wait_until(
        lambda: (s := serving(run)).get(1) not in (None, victim) and len(s) == 2 and s,
        timeout=20,
        what="slot 1 refilled",
    )
    assert drive(port, 20) <= set(refilled.values())
    assert not run.find("worker finished: main returned")
    # reforking carries on: a worker of the current generation becomes the next mold
    drive(port, 60)
    run.wait_event("mold ready; forking workers from it", count=2, generation=1, timeout=40)
    run.signal(signal.SIGTERM)
    assert run.wait(30) == 0


def test_a_worker_that_cannot_become_the_mold_turns_reforking_off(supervise):
    run, port = start(supervise, "--refork-after", "10", env={"LINGER": "1"})
    drive(port, 40)
    (off,) = run.wait_event(
        "reforking is off: a worker cannot become the mold; --refork-after 0 silences this"
    )
    assert "exporter" in off["reason"]
    # the promoted worker's slot is refilled by the master; the service never stopped
    wait_until(lambda: len(serving(run)) == 2, timeout=20, what="2 workers serving")
    drive(port, 40)
    assert len(run.find("promoting a worker to mold")) == 1
    run.signal(signal.SIGTERM)
    assert run.wait(30) == 0


def test_a_stop_during_a_promotion_ends_every_process_within_the_grace(supervise):
    run, port = start(
        supervise, "--refork-after", "10", "--graceful-timeout", "5", workers=1, env={"SLEEP_S": "3"}
    )
    slow = threading.Thread(target=get, args=(port, "/sleep"), daemon=True)
    slow.start()
    run.wait_event("request sleeping")
    for _ in range(12):
        get(port)
    run.wait_event("promoting a worker to mold", timeout=10)
    began = time.monotonic()
    run.signal(signal.SIGTERM)  # while the promoted worker drains its slow request
    assert run.wait(20) == 0
    assert time.monotonic() - began < 5 + 2
    slow.join(10)


def test_a_worker_killed_while_being_promoted_is_a_crash_and_its_slot_is_refilled(supervise):
    """The OOM killer picks the worker being promoted: its slot is refilled at
    once (it had served: no backoff), the death is logged as a crash of that
    worker, and every slot keeps serving."""
    run, port = start(supervise, "--refork-after", "20", "--hooks", "hooks_slowmold")
    drive(port, 60)
    (promoted,) = run.wait_event("promoting a worker to mold", timeout=20)
    victim = promoted["worker_pid"]
    os.kill(victim, signal.SIGKILL)
    (crashed,) = run.wait_event("worker crashed", worker_pid=victim, timeout=15)
    assert "while becoming the mold" in crashed["status"]
    assert crashed["restart_in_s"] == 0.0 and crashed["crashes_in_a_row"] == 0, crashed
    slot = promoted["worker"]
    refilled = wait_until(
        lambda: (s := serving(run)).get(slot) not in (None, victim) and len(s) == 2 and s,
        timeout=20,
        what=f"slot {slot} refilled",
    )
    assert drive(port, 20) <= set(refilled.values())
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_a_reload_during_a_promotion_leaves_no_mold_behind(supervise):
    """HUP while a worker drains to become the mold: the promotion is called
    off, the worker exits, and every slot serves again; no process lingers as
    a mold that no master tracks."""
    run, port = start(supervise, "--refork-after", "20", "--hooks", "hooks_slowmold")
    drive(port, 60)
    (promoted,) = run.wait_event("promoting a worker to mold", timeout=20)
    victim = promoted["worker_pid"]
    before = set(serving(run).values())
    run.signal(signal.SIGHUP)
    run.wait_event("re-executed with new code", timeout=30)  # --preload: the master re-executes
    wait_until(lambda: not alive(victim), timeout=10, what="the promoted worker to exit")
    wait_until(
        lambda: len(s := serving(run)) == 2 and not set(s.values()) & before, timeout=20, what="2 new workers"
    )
    assert drive(port, 20) <= set(serving(run).values())
    assert not run.find("mold ready", generation=1)  # (each image preloads in a mold of generation 0)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_a_request_thread_still_busy_at_promotion_delays_reforking_but_does_not_end_it(supervise):
    """A WSGI request thread runs on after its client left (as under any sync
    server); promoted then, the worker cannot fork safely. That is one slow
    request, not the app: the worker exits, its slot is refilled, and a later
    promotion makes the mold (reforking stays on)."""
    port = free_port()
    run = supervise(
        "wsgipid:app", "-w", "1", "--threads", "2", "--preload", "--no-fleet", "-b", f"127.0.0.1:{port}",
        "--refork-after", "20", env={"SLEEP_S": "8"},
    )  # fmt: skip
    first = run.wait_ready(1)[1]
    gone = RawConnection(port)
    gone.send(b"GET /sleep HTTP/1.1\r\nHost: test\r\n\r\n")
    run.wait_event("request sleeping")
    gone.close()  # its thread sleeps on
    drive(port, 30)
    run.wait_event("promoting a worker to mold", timeout=20)
    run.wait_event("cannot become the mold now; exiting instead", timeout=20)
    assert not run.find("reforking is off: a worker cannot become the mold; --refork-after 0 silences this")
    wait_until(lambda: serving(run).get(1) not in (None, first), timeout=20, what="slot 1 refilled")
    wait_until(lambda: drive(port, 5) and run.find("mold ready"), timeout=40, what="a later promotion")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_a_stop_while_the_mold_of_generation_0_imports_the_app_ends_at_once(supervise):
    """The app is imported in the mold, after the master started: a TERM then
    must not wait for the import, nor for the graceful timeout."""
    pytest.importorskip("setproctitle")  # the app finds the mold by its title
    run, _ = start(supervise, env={"SLOW_SEED_IMPORT": "30"}, ready=False)
    run.wait_event("mold of generation 0 spawned; it imports the target", timeout=15)
    began = time.monotonic()
    run.signal(signal.SIGTERM)
    assert run.wait(15) == 0
    assert time.monotonic() - began < 5
    assert not run.find("worker ready")


def test_an_app_that_starts_a_thread_at_import_is_preloaded_by_the_master_instead(supervise):
    """No fork carries a thread: the mold of generation 0 refuses (after 5 s),
    reforking turns off, and the master imports the app itself, as --preload
    does without reforking; the workers are forked from it and serve."""
    pytest.importorskip("setproctitle")  # the app finds the mold by its title
    run, port = start(supervise, env={"THREAD_AT_SEED_IMPORT": "1"}, ready=False)
    run.wait_ready(2, timeout=30)  # after the mold's 5 s for its threads to end
    refusal = "the app cannot be preloaded in a mold; the master preloads it (--refork-after off does so"
    (refused,) = run.find(refusal + " from the start)")
    assert "sdk-flusher" in refused["reason"]
    assert [e["role"] for e in run.find("target preloaded")] == ["master"]
    assert run.find("reforking is off: a worker cannot become the mold; --refork-after 0 silences this")
    assert drive(port, 10)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
