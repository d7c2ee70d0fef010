"""Reaching a running master from where it was not started, and when its
config file broke: ``supervise status/reload/scale/stop`` against real masters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import cli

from conftest import wait_until

pytestmark = pytest.mark.usefixtures("own_socket_dirs")


def ctl(*args: str, cwd: Path):
    return cli(*args, cwd=cwd, timeout=60)


def test_commands_reach_the_one_master_from_another_directory(supervise, tmp_path: Path):
    app, elsewhere = tmp_path / "srv", tmp_path / "home"
    app.mkdir()
    elsewhere.mkdir()
    # as docs/deploy/systemd.md has it: the pid file named in the project's supervise.toml
    (app / "supervise.toml").write_text(f'pid = "{tmp_path}/run/app.pid"\n')
    (tmp_path / "run").mkdir()
    run = supervise("mains:wait", "-w", "1", cwd=app)
    run.wait_ready(1)

    out = ctl("status", "--json", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["master"]["pid"] == run.pid
    assert out.stderr == (
        "supervise: no master was started in this directory; using the one running: "
        f"pid {run.pid} (mains:wait) in {app}\n"
    )
    out = ctl("scale", "2", cwd=elsewhere)
    assert out.returncode == 0 and out.stdout.strip() == "scaling from 1 to 2 workers", out.stderr
    run.wait_ready(2)
    # the file, named from anywhere, finds it without a search (and without a note)
    out = ctl("status", "-c", str(app / "supervise.toml"), cwd=elsewhere)
    assert out.returncode == 0 and out.stderr == "", out.stderr

    out = ctl("stop", cwd=elsewhere)
    assert out.returncode == 0 and out.stdout.startswith(f"stopped: master {run.pid}"), out.stderr
    assert run.wait(5) == 0
    out = ctl("status", cwd=elsewhere)
    assert out.returncode == 7
    assert out.stderr.startswith("supervise: error: no master is running: nothing listens on ")
    assert "no master of this user runs elsewhere" in out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_several_masters_are_listed_not_guessed(supervise, tmp_path: Path):
    dirs = [tmp_path / name for name in ("one", "two", "home")]
    for d in dirs:
        d.mkdir()
    runs = [supervise("mains:wait", "-w", "1", cwd=d) for d in dirs[:2]]
    for run in runs:
        run.wait_ready(1)
    out = ctl("stop", cwd=dirs[2])
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert lines[0] == (
        "supervise: error: 2 masters of this user are running and none was started in this "
        "directory: run from its directory, or pass one of"
    )
    assert len(lines) == 3
    for run, d in zip(runs, dirs, strict=False):
        assert any(f"# pid {run.pid} mains:wait in {d}" in line for line in lines[1:]), lines
    assert all(run.proc.poll() is None for run in runs)  # neither was stopped
    # the listed option picks one
    pick = next(line for line in lines[1:] if f"pid {runs[1].pid} " in line).split()[:2]
    out = ctl("stop", *pick, cwd=dirs[2])
    assert out.returncode == 0, out.stderr
    assert runs[1].wait(5) == 0 and runs[0].proc.poll() is None
    # one left: found again
    out = ctl("status", "--json", cwd=dirs[2])
    assert out.returncode == 0 and json.loads(out.stdout)["master"]["pid"] == runs[0].pid
    runs[0].signal(15)
    assert runs[0].wait() == 0


def test_commands_reach_the_master_after_its_config_file_broke(supervise, tmp_path: Path):
    conf = tmp_path / "supervise.toml"
    conf.write_text('workers = 1\npid = "app.pid"\n')
    run = supervise("mains:wait")
    run.wait_ready(1)
    # valid TOML, wrong settings: not what finding the master reads
    conf.write_text('workers = "many"\nno_such_setting = 1\npid = "app.pid"\n')
    out = ctl("status", "--json", cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert json.loads(out.stdout)["master"]["pid"] == run.pid
    # not TOML at all: a warning, and the master is still reached
    conf.write_text("workers = [\n")
    out = ctl("status", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("supervise: warning: config: supervise.toml is not valid TOML: ")
    assert out.stderr.rstrip().endswith("; looking for the master without it")
    out = ctl("reload", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("reloading 1 workers"), out.stderr
    # the master itself refuses the broken file and keeps its workers
    [aborted] = run.wait_event("reload aborted: invalid configuration; the running workers are kept")
    assert "not valid TOML" in aborted["error"]
    out = ctl("stop", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert run.wait(5) == 0


def test_a_second_master_in_one_directory_runs_without_a_socket_and_says_what_to_do(supervise, tmp_path):
    first = supervise("mains:wait", "-w", "1")
    first.wait_ready(1)
    second = supervise("mains:wait", "-w", "1")
    second.wait_ready(1)
    [warning] = second.find(
        "no control socket: supervise status/reload/scale/stop will not reach this master"
    )
    assert "another master is listening on it" in warning["error"]
    assert warning["fix"] == (
        "give each master started in one directory its own --pid FILE or --control-socket PATH"
    )
    out = ctl("status", "--json", cwd=tmp_path)
    assert json.loads(out.stdout)["master"]["pid"] == first.pid
    # as the docs say: its own --pid, and the same option for the commands
    third = supervise("mains:wait", "-w", "1", "--pid", "third.pid")
    third.wait_ready(1)
    out = ctl("status", "--json", "--pid", "third.pid", cwd=tmp_path)
    assert json.loads(out.stdout)["master"]["pid"] == third.pid
    for run in (first, second, third):
        run.signal(15)
        assert run.wait() == 0
    wait_until(lambda: not (tmp_path / "third.pid").exists(), 5, "the pid file removed")
