"""Controlling a running master: --pid, the control socket, and
``supervise status/reload/scale/stop`` against a real master."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from test_cli import cli

from conftest import alive, wait_until


def ctl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli(*args, cwd=cwd, env=env, timeout=60)


def status(cwd: Path, *args: str) -> dict:
    out = ctl("status", "--json", *args, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_status_reload_scale_stop_against_a_running_master(supervise, tmp_path: Path):
    run = supervise("mains:wait", "-w", "2", "--pid", "app.pid")
    first = run.wait_ready(2)
    pid_file = tmp_path / "app.pid"
    assert pid_file.read_text() == f"{run.pid}\n"
    sock = tmp_path / "app.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    data = status(tmp_path, "--pid", "app.pid")
    assert data["master"]["pid"] == run.pid
    assert data["master"]["workers_ready"] == 2
    assert sorted(w["worker_pid"] for w in data["workers"]) == sorted(first.values())
    assert {w["state"] for w in data["workers"]} == {"ready"}
    # without --pid: the directory's default name links to the socket
    assert status(tmp_path)["master"]["pid"] == run.pid
    text = ctl("status", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"master {run.pid}  mains:wait  running" in text.stdout
    for pid in first.values():
        assert f"  {pid}  ready" in text.stdout

    out = ctl("scale", "3", cwd=tmp_path)
    assert (out.returncode, out.stdout.strip()) == (0, "scaling from 2 to 3 workers"), out.stderr
    run.wait_event("worker ready", count=3)
    out = ctl("scale", "-1", cwd=tmp_path)
    assert out.stdout.strip() == "scaling from 3 to 2 workers", out.stderr
    out = ctl("scale", "5000", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == "supervise: error: scale to 5000 refused: --workers is at most 1024"

    ready_before = len(run.find("worker ready"))
    out = ctl("reload", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("reloading 2 workers"), out.stderr
    run.wait_event("reload complete")
    assert len(run.find("worker ready")) == ready_before + 2
    new = {w["worker_pid"] for w in status(tmp_path)["workers"]}
    assert not new & set(first.values())

    out = ctl("stop", cwd=tmp_path)
    # it waited: the master had exited when stop returned
    assert out.returncode == 0 and out.stdout.startswith(f"stopped: master {run.pid}"), out.stderr
    assert run.wait(5) == 0
    assert not pid_file.exists() and not sock.exists()
    gone = ctl("status", "--pid", "app.pid", cwd=tmp_path)
    assert gone.returncode == 7
    assert gone.stderr.strip() == (
        f"supervise: error: no master is running: pid file {Path('app.pid')} does not exist or is empty"
    )


def test_stop_fast_and_no_master(supervise, tmp_path: Path):
    out = ctl("reload", cwd=tmp_path)
    assert out.returncode == 7
    assert out.stderr.startswith("supervise: error: no master is running: nothing listens on ")
    assert len(out.stderr.strip().splitlines()) == 1
    run = supervise("mains:stubborn", "-w", "1", "--graceful-timeout", "30")
    run.wait_ready(1)
    out = ctl("stop", "--fast", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert run.wait(5) == 0
    assert run.find("stopping", mode="fast")


def test_scale_refused_by_the_connection_budget(supervise, tmp_path: Path, postgres_url: str):
    run = supervise(
        "dbapp:hold",
        "-w",
        "2",
        "--pool-max-size",
        "4",
        "--max-db-connections",
        "10",
        env={"DATABASE_URL": postgres_url},
    )
    run.wait_ready(2)
    out = ctl("scale", "+1", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(
        "supervise: error: scale to 3 refused: connection budget exceeded: 3 workers"
    )

    def reported() -> dict | None:
        data = status(tmp_path)
        return data if all("pool" in w for w in data["workers"]) else None

    data = wait_until(reported, 10, "pool reports")
    assert data["master"]["workers"] == 2
    pool = data["workers"][0]["pool"]["db"]
    assert pool["pool_max"] == 4 and pool["pool_size"] >= 1
    run.signal(15)
    assert run.wait() == 0


def test_pid_file_held_by_a_live_master_is_refused_and_a_stale_one_taken_over(supervise, tmp_path: Path):
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # a live process
    held = supervise("mains:wait", "-w", "1", "--pid", str(pid_file), "--control-socket", "none")
    assert held.wait() == 2
    assert held.final(2).startswith(f"--pid {pid_file}: a master is already running as pid {os.getpid()}")
    assert pid_file.read_text() == f"{os.getpid()}\n"  # not ours: left alone

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_file.write_text(f"{dead.pid}\n")
    run = supervise("mains:wait", "-w", "1", "--pid", str(pid_file))
    run.wait_ready(1)
    assert run.find("stale pid file taken over", stale_pid=dead.pid)
    assert pid_file.read_text() == f"{run.pid}\n"
    assert not list(tmp_path.glob(".app.pid.*"))  # no temporary left behind
    run.signal(15)
    assert run.wait() == 0
    assert not pid_file.exists()


def test_control_socket_rejects_junk_and_survives_a_silent_client(supervise, tmp_path: Path):
    path = tmp_path / "ctl.sock"
    run = supervise("mains:wait", "-w", "1", "--control-socket", str(path))
    run.wait_ready(1)
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(str(path))  # says nothing: must not stall the loop
    with socket.socket(socket.AF_UNIX) as junk:
        junk.connect(str(path))
        junk.sendall(b"hello\n")
        assert b"bad request" in junk.recv(4096)
    data = status(tmp_path, "--control-socket", str(path))
    assert data["master"]["pid"] == run.pid
    silent.close()
    run.signal(15)
    assert run.wait() == 0
    assert not path.exists()
    assert alive(run.pid) is False
