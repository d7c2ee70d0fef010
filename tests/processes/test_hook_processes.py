"""Hooks run in the documented process, at the documented moment, in order."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from conftest import APPS


def _read(log: Path) -> list[tuple[str, int, str]]:
    out = []
    for line in log.read_text().splitlines():
        name, pid, wid = line.split()
        out.append((name, int(pid), wid))
    return out


def test_hook_order_and_processes(supervise, tmp_path: Path):
    log = tmp_path / "hooks.log"
    run = supervise("mains:wait", "-w", "2", "--hooks", "hooks_log", env={"HOOKS_LOG": str(log)})
    pids = run.wait_ready(2)
    run.wait_event("all workers ready")
    run.signal(signal.SIGHUP)
    run.wait_event("reload complete")
    run.wait_event("worker exited", count=2, reason="reload")
    new = run.ready_pids()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    calls = _read(log)
    master = run.pid
    names = [c[0] for c in calls]
    assert names[0] == "on_starting" and names[-1] == "on_exit:0"
    for name, pid, _ in calls:
        expected_master = name in {
            "on_starting",
            "when_ready",
            "before_fork",
            "child_exit",
            "on_reload",
            "on_exit:0",
        }
        assert (pid == master) == expected_master, (name, pid)
    # each worker: before_fork (master) -> after_fork -> worker_ready -> worker_exit (worker)
    # -> child_exit (master)
    for wid, pid in list(pids.items()) + list(new.items()):
        mine = [c for c in calls if c[1] == pid]
        assert [c[0] for c in mine] == ["after_fork", "worker_ready", "worker_exit"]
        assert all(c[2] == str(wid) for c in mine)
        first = calls.index(mine[0])
        assert ("before_fork", master, str(wid)) in calls[:first]
        assert ("child_exit", master, str(wid)) in calls[calls.index(mine[-1]) :]
    assert names.index("when_ready") > max(
        i for i, n in enumerate(names) if n == "worker_ready" and calls[i][1] in pids.values()
    )
    assert names.index("on_reload") < names.index("worker_ready", names.index("when_ready"))


def test_programmatic_run_with_decorated_hooks(supervise, tmp_path: Path):
    log = tmp_path / "hooks.log"
    run = supervise(cmd=[sys.executable, str(APPS / "prog.py")], env={"HOOKS_LOG": str(log)})
    run.wait_ready(2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    lines = log.read_text().splitlines()
    assert sorted(lines[:2]) == ["after_fork 1", "after_fork 2"]
    assert lines[-1] == "run returned 0"


def test_programmatic_callable_target_and_boot_failure(supervise):
    ok = supervise(cmd=[sys.executable, str(APPS / "prog_callable.py")])
    ok.wait_ready(2)
    assert ok.find("starting")[0]["target"] == "__main__:main"
    ok.signal(signal.SIGTERM)
    assert ok.wait() == 0
    bad = supervise("fail", cmd=[sys.executable, str(APPS / "prog_callable.py")])
    assert bad.wait() == 3
