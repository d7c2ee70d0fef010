"""Start, stop, reload and scale real supervisors with real signals."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from conftest import alive, session_pids, wait_until


def test_graceful_stop_lets_main_return(supervise):
    run = supervise("mains:wait", "-w", "2")
    pids = run.wait_ready(2)
    assert sorted(pids) == [1, 2]
    run.wait_event("main started", count=2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert len(run.find("main done")) == 2
    exits = run.find("worker exited", reason="shutdown")
    assert {e["worker_pid"] for e in exits} == set(pids.values())
    assert all(e["status"] == "exited with code 0" for e in exits)


def test_every_line_names_role_worker_and_pid(supervise):
    run = supervise("mains:wait", "-w", "2")
    pids = run.wait_ready(2)
    run.wait_event("hello from a thread", count=2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    for event in run.events:
        assert {"role", "worker_id", "pid", "level", "timestamp"} <= event.keys(), event
    # stdlib loggers in workers and in their threads come through the same pipeline
    for event in run.find("hello from a thread") + run.find("main started"):
        assert event["role"] == "worker"
        assert event["logger"] == "testapp"
        assert pids[event["worker_id"]] == event["pid"]
    master = run.find("starting")[0]
    assert master["role"] == "master" and master["worker_id"] is None and master["pid"] == run.pid


def test_second_sigint_stops_fast(supervise):
    run = supervise("mains:stubborn", "-w", "2", "--graceful-timeout", "60")
    run.wait_ready(2)
    run.signal(signal.SIGINT)
    run.wait_event("stopping", mode="graceful")
    workers = list(run.ready_pids().values())
    assert all(alive(p) for p in workers)  # stubborn main keeps them running
    started = time.monotonic()
    run.signal(signal.SIGINT)
    assert run.wait() == 0
    assert time.monotonic() - started < 3
    assert run.find("stopping", mode="fast")


def test_sigquit_stops_fast(supervise):
    run = supervise("mains:stubborn", "-w", "2", "--graceful-timeout", "60")
    run.wait_ready(2)
    started = time.monotonic()
    run.signal(signal.SIGQUIT)
    assert run.wait() == 0
    assert time.monotonic() - started < 3


def test_graceful_timeout_ends_a_stubborn_worker(supervise):
    run = supervise("mains:stubborn", "-w", "1", "--graceful-timeout", "0.5")
    run.wait_ready(1)
    started = time.monotonic()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert time.monotonic() - started < 5
    assert run.find("did not stop in time; exiting")


def test_async_main_stops_gracefully(supervise):
    run = supervise("mains:async_wait", "-w", "2")
    run.wait_ready(2)
    run.wait_event("async main started", count=2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert len(run.find("async main done")) == 2


def test_main_returning_finishes_its_slot(supervise):
    run = supervise("mains:finish", "-w", "3")
    assert run.wait() == 0
    assert len(run.find("job done")) == 3
    assert len(run.find("worker finished: main returned")) == 3
    assert len(run.find("worker spawned")) == 3  # finished slots are not refilled
    assert run.find("every worker finished")


def test_killed_worker_is_replaced_with_the_same_id(supervise):
    run = supervise("mains:wait", "-w", "2")
    before = run.wait_ready(2)
    started = time.monotonic()
    import os

    os.kill(before[2], signal.SIGKILL)
    run.wait_event("worker ready", count=3)
    after = run.ready_pids()
    assert after[1] == before[1]
    assert after[2] != before[2]
    assert time.monotonic() - started < 2
    crash = run.find("worker crashed", worker=2)[0]
    assert crash["status"] == "killed by signal SIGKILL"
    assert crash["restart_in_s"] == 0.0
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_hup_reloads_one_worker_at_a_time_and_rereads_config(supervise, tmp_path: Path):
    (tmp_path / "supervise.toml").write_text("workers = 2\n")
    run = supervise("mains:wait")
    old = run.wait_ready(2)
    (tmp_path / "supervise.toml").write_text("workers = 3\n")
    run.signal(signal.SIGHUP)
    run.wait_event("reload complete")
    run.wait_event("worker exited", count=2, reason="reload")
    new = run.wait_ready(5)  # 2 initial + 2 replacements + 1 scaled up
    assert sorted(new) == [1, 2, 3]
    assert new[1] != old[1] and new[2] != old[2]
    # a replacement is ready before the worker it replaces is asked to stop
    for slot in (1, 2):
        ready = next(e for e in run.find("worker ready", worker=slot) if e["worker_pid"] == new[slot])
        exited = run.find("worker exited", worker=slot, worker_pid=old[slot])[0]
        stopping = next(
            e
            for e in run.find("retiring: a replacement is ready; finishing current work")
            if e["pid"] == old[slot]
        )
        assert ready["_t"] <= stopping["_t"] <= exited["_t"]
    reloading = run.find("reloading")[0]
    assert reloading["changed"] == {"workers": 3}
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_hup_with_a_broken_config_keeps_workers(supervise, tmp_path: Path):
    (tmp_path / "supervise.toml").write_text("workers = 1\n")
    run = supervise("mains:wait")
    old = run.wait_ready(1)
    (tmp_path / "supervise.toml").write_text("wokers = 3\n")
    run.signal(signal.SIGHUP)
    err = run.wait_event("reload aborted: invalid configuration; the running workers are kept")[0]
    assert "did you mean 'workers'?" in err["error"]
    run.signal(signal.SIGUSR1)
    run.wait_event("worker status")
    assert run.ready_pids() == old and alive(old[1])
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_hup_aborts_when_a_new_worker_cannot_boot(supervise, app_dir: Path):
    run = supervise("mains:wait", "-w", "2", cwd=app_dir, env={"PYTHONPATH": str(app_dir)})
    old = run.wait_ready(2)
    (app_dir / "mains.py").write_text("def wait(worker:\n")  # new code has a syntax error
    run.signal(signal.SIGHUP)
    err = run.wait_event("reload aborted: new worker failed to boot; the running workers are kept")
    assert "SyntaxError" in err[0]["error"]
    assert all(alive(p) for p in old.values())
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_ttin_and_ttou_scale(supervise):
    run = supervise("mains:wait", "-w", "1")
    run.wait_ready(1)
    run.signal(signal.SIGTTIN)
    run.wait_event("worker ready", worker=2)
    run.signal(signal.SIGTTOU)
    gone = run.wait_event("worker exited", reason="scaled down")[0]
    assert gone["worker"] == 2
    run.signal(signal.SIGTTOU)
    run.wait_event("TTOU ignored: already at one worker")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_usr1_logs_a_status_line_per_worker(supervise):
    run = supervise("mains:wait", "-w", "2")
    pids = run.wait_ready(2)
    run.signal(signal.SIGUSR1)
    lines = run.wait_event("worker status", count=2)
    assert {(e["worker"], e["worker_pid"]) for e in lines} == set(pids.items())
    assert all(e["state"] == "ready" and e["age_s"] >= 0 and "heartbeat_age_s" in e for e in lines)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_usr2_is_a_warning_not_the_end_of_the_master(supervise):
    run = supervise("mains:wait", "-w", "1")
    pids = run.wait_ready(1)
    run.signal(signal.SIGUSR2)  # gunicorn's binary upgrade; the default action would kill us
    run.wait_event(
        "USR2 ignored: there is no binary upgrade here; HUP reloads workers with new code "
        "(with --preload the master re-executes itself, keeping its pid and sockets)"
    )
    run.signal(signal.SIGUSR1)  # the master's loop still answers, and the worker is the same
    assert run.wait_event("worker status")[0]["worker_pid"] == pids[1]
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_workers_exit_when_the_master_is_sigkilled(supervise):
    run = supervise("mains:stubborn", "-w", "2", "--graceful-timeout", "60")
    pids = list(run.wait_ready(2).values())
    run.signal(signal.SIGKILL)
    run.wait()
    wait_until(lambda: not any(alive(p) for p in pids), 3.0, "orphaned workers to exit")
    assert not session_pids(run.pid)


def test_atexit_handlers_run_only_in_the_master(supervise, tmp_path: Path):
    log = tmp_path / "atexit.log"
    run = supervise("atexit_app:main", "-w", "2", "--preload", env={"ATEXIT_LOG": str(log)})
    run.wait_ready(2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert log.read_text().split() == [str(run.pid)]


def test_preload_freezes_the_app_before_fork(supervise):
    run = supervise("mains:report", "-w", "1", "--preload")
    preloaded = run.wait_event("worker facts")[0]["freeze_count"]
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    lazy = supervise("mains:report", "-w", "1")
    lazy_count = lazy.wait_event("worker facts")[0]["freeze_count"]
    lazy.signal(signal.SIGTERM)
    assert lazy.wait() == 0
    # the master's own heap is frozen either way; with --preload the app's too
    assert lazy_count > 1000
    assert preloaded > lazy_count


def test_process_titles(supervise):
    run = supervise("mains:wait", "-w", "1")
    pids = run.wait_ready(1)
    titles = subprocess.run(
        ["ps", "-o", "pid=,args=", "-p", f"{run.pid},{pids[1]}"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{run.pid} supervise: master mains:wait" in titles
    assert f"{pids[1]} supervise: worker 1 mains:wait" in titles
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_hup_picks_up_new_code_without_preload(supervise, app_dir: Path):
    run = supervise("mains:wait", "-w", "1", cwd=app_dir, env={"PYTHONPATH": str(app_dir)})
    run.wait_ready(1)
    source = (app_dir / "mains.py").read_text()
    (app_dir / "mains.py").write_text(
        source.replace('log.info("main started"', 'log.info("new code started"')
    )
    run.signal(signal.SIGHUP)
    run.wait_event("new code started")
    run.wait_event("reload complete")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_max_worker_memory_recycles(supervise):
    run = supervise("mains:wait", "-w", "1", "--max-worker-memory", "1")  # any worker exceeds 1 MB
    first = run.wait_ready(1)[1]
    recycled = run.wait_event("recycling worker")[0]
    assert recycled["worker_pid"] == first and recycled["reason"].startswith("memory ")
    run.wait_event("worker exited", reason=f"recycled: {recycled['reason']}")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_systemd_notify_ready_only_when_workers_are(supervise, tmp_path: Path):
    import socket as sk

    path = tmp_path / "notify.sock"
    server = sk.socket(sk.AF_UNIX, sk.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    try:
        run = supervise("mains:wait", "-w", "2", env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"})
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):
            messages.append(server.recv(4096).decode())
        # READY=1 came once the master counted both workers (the log lines may still be in the pipe)
        assert "STATUS=2 workers ready" in messages[-1]
        run.wait_event("worker ready", count=2)
        watchdogs = 0
        while watchdogs < 2:  # every 0.1 s (half of WatchdogSec)
            watchdogs += server.recv(4096).decode() == "WATCHDOG=1"
        run.signal(signal.SIGTERM)
        while "STOPPING=1" not in (message := server.recv(4096).decode()):
            pass
        assert message.startswith("STOPPING=1")
        assert run.wait() == 0
    finally:
        server.close()
