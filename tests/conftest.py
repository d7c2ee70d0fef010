"""Fixtures for the project's own tests, built on the pytest plugin's harness."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from supervisor.testing.process import (
    SupervisorProcess,
    alive,
    session_pids,
    wait_until,
)

APPS = Path(__file__).parent / "apps"
Run = SupervisorProcess
__all__ = ["APPS", "Run", "alive", "backends", "free_port", "session_pids", "wait_until"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backends(url: str) -> list[tuple[int, str]]:
    """(backend pid, application_name) of every other client of ``url``'s database."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "select pid, application_name from pg_stat_activity where datname = %s "
            "and pid <> pg_backend_pid() and backend_type = 'client backend'",
            (dbname,),
        ).fetchall()


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., SupervisorProcess]]:
    """Start ``python -m supervisor ARGS`` in ``tmp_path`` with the test apps importable;
    after the test, fail if any process of its session outlived the master."""
    runs: list[SupervisorProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        cmd: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> SupervisorProcess:
        full_env = {"PYTHONPATH": str(APPS), **(env or {})}
        run = SupervisorProcess(list(args), cwd or tmp_path, full_env, cmd, pass_fds)
        runs.append(run)
        return run

    yield start
    leftovers = {}
    for run in runs:
        leftover = run.finish()
        if leftover:
            leftovers[run.pid] = leftover
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory with a copy of the test apps, for tests that edit them."""
    dest = tmp_path / "app"
    shutil.copytree(APPS, dest)
    return dest
