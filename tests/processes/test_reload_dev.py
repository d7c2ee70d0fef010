"""--reload: a file change rolls the workers through the HUP path; a change
that does not import keeps the running workers and says so in one line."""

from __future__ import annotations

from pathlib import Path

from conftest import alive

APP = """
import logging

VERSION = {version}
log = logging.getLogger("devapp")


def main(worker):
    log.info("devapp running", extra={{"version": VERSION}})
    worker.stopping.wait()
"""


def test_reload_on_change_and_a_syntax_error_keeps_the_workers(supervise, tmp_path: Path):
    (tmp_path / "devapp.py").write_text(APP.format(version=1))
    (tmp_path / "notes.txt").write_text("not python\n")
    run = supervise("devapp:main", "-w", "2", "--reload", cwd=tmp_path)
    first = run.wait_ready(2)
    run.wait_event("watcher ready", role="reloader")
    # ignored: not *.py, and excluded directories
    (tmp_path / "notes.txt").write_text("still not python\n")
    (tmp_path / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "__pycache__" / "x.py").write_text("")

    (tmp_path / "devapp.py").write_text(APP.format(version=2))
    run.wait_event("reload complete", timeout=20)
    # the workers' lines come down their own pipes: they may trail the master's
    run.wait_event("devapp running", count=2, version=2)
    assert len(run.find("devapp running", version=2)) == 2
    changed = run.find("files changed; reloading")
    assert len(changed) == 1 and changed[0]["files"] == ["devapp.py"]
    second = run.ready_pids()
    assert set(second.values()).isdisjoint(first.values())

    (tmp_path / "devapp.py").write_text("def main(worker):\n    return (\n")
    aborted = run.wait_event(
        "reload aborted: new worker failed to boot; the running workers are kept", timeout=20
    )
    assert "SyntaxError" in aborted[0]["error"] and "\n" not in aborted[0]["error"]
    assert all(alive(pid) for pid in second.values())

    (tmp_path / "devapp.py").write_text(APP.format(version=3))
    run.wait_event("reload complete", count=2, timeout=20)
    run.wait_event("devapp running", count=2, version=3)
    assert len(run.find("devapp running", version=3)) == 2
    run.signal(15)
    assert run.wait() == 0
    assert not run.find("threads in the master at fork")  # the watcher is a process, not a thread
