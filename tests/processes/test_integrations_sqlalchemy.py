"""SQLAlchemy engines across fork: under supervise and under the gunicorn helper.

The app (tests/apps/gapp.py with GAPP_ENGINE=1) is preloaded: it creates an
engine and runs a query at import, in the master, then serves every request
through that engine.
"""

from __future__ import annotations

import signal
import urllib.error
from pathlib import Path

import pytest
from integrations_util import (
    PASSWORD,
    free_port,
    full_output,
    get_json,
    gunicorn,
    wait_line,
    with_password,
)

from conftest import backends, wait_until

pytest.importorskip("sqlalchemy")

WORKERS = 3


def check_workers_own_their_connections(run, port: int, url: str, import_file: Path) -> None:
    master_backend = int(import_file.read_text())
    answers = []
    for _ in range(40):
        try:
            answers.append(get_json(port))
        except urllib.error.HTTPError as exc:  # a protocol error on a shared or dead connection
            raise AssertionError(f"request failed: {exc}\n{full_output(run)}") from None
    wait_until(lambda: len({a["pid"] for a in [*answers, get_json(port)]}) == WORKERS, 10, "every worker")
    answers += [get_json(port) for _ in range(20)]
    by_worker: dict[int, set[int]] = {}
    for answer in answers:
        assert answer["app"] == "gapp:engine"
        by_worker.setdefault(answer["pid"], set()).add(answer["backend"])
    workers = list(by_worker.values())
    for i, mine in enumerate(workers):  # no backend serves two workers
        for other in workers[i + 1 :]:
            assert not mine & other
    assert all(master_backend not in mine for mine in workers)
    # the master's engine connection is gone: only workers' connections remain
    engine_backends = {pid for pid, app in backends(url) if app == "gapp:engine"}
    assert master_backend not in engine_backends
    assert engine_backends <= set().union(*workers)
    out = full_output(run)
    assert "closed a SQLAlchemy engine's pooled connections before fork" in out
    assert "closed a PostgreSQL connection open in the master" not in out  # disposed, not swept
    assert "Traceback" not in out
    assert PASSWORD not in out


def test_engine_under_supervise(supervise, tmp_path, postgres_url):
    port = free_port()
    import_file = tmp_path / "import-backend"
    run = supervise(
        "gapp:app",
        "--preload",
        "-w",
        str(WORKERS),
        "-b",
        f"127.0.0.1:{port}",
        env={
            "DATABASE_URL": with_password(postgres_url),
            "GAPP_ENGINE": "1",
            "GAPP_IMPORT_FILE": str(import_file),
        },
    )
    try:
        run.wait_ready(WORKERS)
    except AssertionError:
        raise AssertionError(full_output(run)) from None
    check_workers_own_their_connections(run, port, postgres_url, import_file)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert backends(postgres_url) == []  # each worker disposed its engine on the way out


def test_engine_under_gunicorn(supervise, tmp_path, postgres_url):
    import_file = tmp_path / "import-backend"
    conf = "from supervisor.integrations.gunicorn import install\ninstall(globals())\n"
    run, port = gunicorn(
        supervise,
        tmp_path,
        conf,
        "-w",
        str(WORKERS),
        "--preload",
        "gapp:app",
        env={
            "DATABASE_URL": with_password(postgres_url),
            "GAPP_ENGINE": "1",
            "GAPP_IMPORT_FILE": str(import_file),
        },
    )
    wait_line(run, "database pool open", count=WORKERS)
    check_workers_own_their_connections(run, port, postgres_url, import_file)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert backends(postgres_url) == []
