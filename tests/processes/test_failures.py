"""Every failure exit code, with the message a user reads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from conftest import APPS, alive, wait_until


def test_crash_loop_gives_up_with_exit_6(supervise):
    run = supervise("mains:crash", "-w", "1", "--crash-limit", "2")
    assert run.wait(20) == 6
    crashes = run.find("worker crashed")
    assert [c["crashes_in_a_row"] for c in crashes] == [1, 2, 3]
    assert [c.get("restart_in_s") for c in crashes[:2]] == [0.0, 0.5]
    assert run.find("worker spawned", worker=1, after_backoff_s=0.5)
    final = run.find(
        "worker 1 crashed 3 times in a row (last: exited with code 1); giving up (--crash-limit 2)"
    )
    assert final and final[0]["exit_code"] == 6
    assert any("RuntimeError: boom" in line for line in run.lines)  # main's traceback is logged


def test_a_healthy_slot_keeps_running_while_another_crashes(supervise, tmp_path: Path):
    flag = tmp_path / "crashed"
    run = supervise("mains:crash_slot_2", "-w", "2", env={"CRASH_ONCE_FILE": str(flag)})
    (crashed,) = run.wait_event("worker crashed", worker=2)
    # slot 2's first worker raises as main starts: whether its "ready" is read before its
    # death is reaped depends on the machine's load, so wait for its replacement by pid
    wait_until(
        lambda: [e for e in run.find("worker ready", worker=2) if e["worker_pid"] != crashed["worker_pid"]],
        10,
        "slot 2's replacement ready",
    )
    assert len(run.find("worker ready", worker=1)) == 1
    assert not run.find("worker crashed", worker=1) and not run.find("worker exited", worker=1)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


@pytest.mark.parametrize("workers", ["1", "4"])
def test_boot_failure_exits_3_and_runs_on_exit(supervise, tmp_path: Path, workers: str):
    log = tmp_path / "hooks.log"
    run = supervise("mains:wait", "-w", workers, "--hooks", "hooks_fail", env={"HOOKS_LOG": str(log)})
    assert run.wait() == 3
    assert log.read_text() == "on_exit 3\n"
    errors = run.find("worker failed to boot", role="master")
    assert errors and "after_fork broke in worker" in errors[0]["error"]
    assert any("ValueError: after_fork broke" in line for line in run.lines)


def test_boot_timeout_exits_3(supervise):
    run = supervise("mains:wait", "-w", "2", "--hooks", "hooks_slowboot", "--boot-timeout", "0.5")
    started = time.monotonic()
    assert run.wait() == 3
    assert time.monotonic() - started < 5
    final = next(e for e in run.events if e.get("exit_code") == 3)
    assert "did not become ready within 0.5 s" in final["event"]
    # its stack was dumped before it was killed
    assert any("hooks_slowboot.py" in line for line in run.lines)


def test_heartbeat_timeout_dumps_stacks_kills_and_replaces(supervise, tmp_path: Path):
    run = supervise("mains:hang", "-w", "1", "--timeout", "1", env={"HANG_ONCE_FILE": str(tmp_path / "hung")})
    first = run.wait_ready(1)[1]
    stuck = run.wait_event("worker stuck; dumping its stacks to stderr, then killing it")[0]
    assert stuck["worker_pid"] == first and "heartbeat timeout" in stuck["reason"]
    run.wait_event("worker ready", count=2)
    assert run.ready_pids()[1] != first
    crash = run.find("worker crashed")[0]
    assert crash["status"].startswith("heartbeat timeout")
    assert any("stuck_in_here" in line for line in run.lines)  # faulthandler's dump
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_blocked_event_loop_is_detected(supervise):
    run = supervise("mains:async_block", "-w", "1", "--timeout", "1", "--crash-limit", "1")
    assert run.wait(20) == 6
    stuck = run.find("worker stuck; dumping its stacks to stderr, then killing it")
    assert len(stuck) == 2 and all("heartbeat timeout" in e["reason"] for e in stuck)


def test_missing_attribute_exits_4_with_a_suggestion(supervise):
    run = supervise("mains:wiat", "-w", "2")
    assert run.wait() == 4
    final = next(e for e in run.events if e.get("exit_code") == 4)
    assert final["event"] == "module 'mains' has no attribute 'wiat'; did you mean 'wait'?"


def test_missing_attribute_with_preload_exits_4(supervise):
    run = supervise("mains:mian", "--preload")
    assert run.wait() == 4
    final = next(e for e in run.events if e.get("exit_code") == 4)
    assert "has no attribute 'mian'" in final["event"]
    assert not run.find("worker spawned")


def test_missing_module_exits_4_before_forking(supervise):
    run = supervise("mainz:wait", "-w", "2")
    assert run.wait() == 4
    final = next(e for e in run.events if e.get("exit_code") == 4)
    assert final["event"] == "could not import module 'mainz': no such module"
    assert not run.find("worker spawned")


def test_import_error_inside_the_module_shows_the_real_error(supervise):
    run = supervise("broken_import:main", "-w", "1")
    assert run.wait() == 4
    final = next(e for e in run.events if e.get("exit_code") == 4)["event"]
    assert "No module named 'nonexistent_dependency_xyz'" in final
    assert "broken_import.py, line 1" in final
    assert "Traceback" not in "\n".join(run.lines)


def test_exception_at_import_is_reported_in_one_line(supervise):
    run = supervise("raises_at_import:main", "--preload")
    assert run.wait() == 4
    final = next(e for e in run.events if e.get("exit_code") == 4)["event"]
    assert final.startswith("importing 'raises_at_import' failed: KeyError: 'port'")
    assert "raises_at_import.py, line 2" in final
    assert "Traceback" not in "\n".join(run.lines)


def test_failing_on_starting_aborts_before_any_fork(supervise):
    run = supervise("mains:wait", "--hooks", "hooks_badstart")
    assert run.wait() == 1
    assert not run.find("worker spawned")
    assert any("cannot start today" in e["event"] for e in run.events)


def test_worker_sigkill_during_boot_of_several_workers_still_exits_3(supervise):
    run = supervise("mains:wait", "-w", "3", "--hooks", "hooks_slowboot")
    run.wait_event("worker spawned", count=3)
    spawned = [e["worker_pid"] for e in run.find("worker spawned")]
    for pid in spawned:
        os.kill(pid, signal.SIGKILL)
    assert run.wait() == 3
    assert not any(alive(p) for p in spawned)


def _busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(
    ("target", "args", "code"),
    [
        ("mains:wiat", [], 4),  # a misspelt attribute (lazy: found by the probe)
        ("mains:__name__", [], 4),  # not callable
        ("broken_import:main", [], 4),  # its own import fails
        ("mains:wait", ["-b", "garbage"], 2),
        ("mains:wait", ["--socket-mode", "999"], 2),
        ("mains:wait", ["--health-bind", "nope"], 2),
        ("mains:wait", ["-b", "127.0.0.1:{busy}"], 2),  # port in use
        ("mains:wait", ["--health-bind", "127.0.0.1:{busy}"], 2),
        ("mains:wait", ["--migrations", "{tmp}/nowhere"], 2),  # a missing directory
        ("mains:wait", ["--migrations", "{tmp}/misnamed"], 5),  # a file not named NNNN_name.sql
        ("mains:wait", ["--migrations", "no_such_module:migrate"], 4),
        ("mains:wait", ["--migrations", "alembic:{tmp}/nowhere.ini"], 2),
    ],
)
def test_what_can_fail_without_the_database_fails_before_it(
    supervise, postgres_url: str, tmp_path: Path, target: str, args: list[str], code: int
):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_order.sql").write_text("create table order_check (id int);\n")
    (tmp_path / "misnamed").mkdir()
    (tmp_path / "misnamed" / "first.sql").write_text("create table order_check (id int);\n")
    busy, port = _busy_port()
    try:
        args = ["--migrations", str(migrations), *(a.format(busy=port, tmp=tmp_path) for a in args)]
        run = supervise(target, *args, "--database-url", postgres_url)
        assert run.wait(30) == code
    finally:
        busy.close()
    assert not run.find("worker spawned")
    assert not run.find("waiting for PostgreSQL") and not run.find("migrations done")
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute("select relname from pg_class where relnamespace = 'public'::regnamespace")
        assert tables.fetchall() == [], "the database was touched before a check that needs none"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-b", "garbage"], "bind: 'garbage' is not HOST:PORT"),
        (["--socket-mode", "999"], "socket_mode: '999' is not an octal mode"),
        (["--health-bind", "nope"], "health_bind: 'nope' is not HOST:PORT"),
        (["-b", "127.0.0.1:{busy}"], "address already in use"),
    ],
)
def test_check_finds_what_a_start_would(tmp_path: Path, args: list[str], message: str):
    busy, port = _busy_port()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "supervisor", "check", "mains:wait", *[a.format(busy=port) for a in args]],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(APPS)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        busy.close()
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
