"""The gunicorn helper, with real gunicorn processes and a real PostgreSQL."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import psycopg
import pytest
from integrations_util import (
    PASSWORD,
    full_output,
    get_json,
    gunicorn,
    wait_line,
    with_password,
)

from conftest import backends, wait_until

pytest.importorskip("gunicorn")

CONF = """
from supervisor.integrations.gunicorn import install

def post_fork(server, worker):          # the user's own hook: must still run
    server.log.info("user post_fork ran")

install(globals(), migrations={migrations!r}, pool_min_size=2, pool_max_size=2)
"""


def sql_dir(tmp_path: Path, sql: str) -> str:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0001_items.sql").write_text(sql)
    return str(d)


def test_migrations_once_each_worker_its_own_backends_master_none(supervise, tmp_path, postgres_url):
    url = with_password(postgres_url)
    run, port = gunicorn(
        supervise,
        tmp_path,
        CONF.format(migrations="gapp_migrate:migrate"),
        "-w",
        "3",
        "--preload",
        "gapp:app",
        env={"DATABASE_URL": url, "GAPP_LEAK": "1"},
    )
    wait_line(run, "database pool open", count=3)
    wait_line(run, "user post_fork ran", count=3)
    # a callable migration runs at every start: once, in the master, on the lock's connection
    with psycopg.connect(postgres_url) as conn:
        runs = conn.execute("select app from migration_runs").fetchall()
    assert runs == [(f"gapp:migrate@{socket.gethostname()}",)]

    seen = wait_until(
        lambda: (lambda b: b if len(b) == 6 else None)(backends(postgres_url)),
        10,
        "six pooled backends",
    )
    by_app: dict[str, set[int]] = {}
    for pid, app in seen:
        by_app.setdefault(app, set()).add(pid)
    # three workers x min_size 2, named after the worker; nothing the master opened
    # (neither the migration connection nor what the preloaded app leaked at import)
    assert by_app.keys() == {f"gapp:worker-{i}@{socket.gethostname()}" for i in (1, 2, 3)}
    assert all(len(pids) == 2 for pids in by_app.values())

    answers = [get_json(port) for _ in range(12)]
    for answer in answers:
        assert answer["backend"] in by_app[answer["app"]]
    owners: dict[int, set[int]] = {}
    for answer in answers:
        owners.setdefault(answer["backend"], set()).add(answer["pid"])
    assert all(len(pids) == 1 for pids in owners.values())  # no backend serves two processes

    out = full_output(run)
    assert "closed a PostgreSQL connection open in the master before fork" in out
    assert PASSWORD not in out
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert backends(postgres_url) == []


def test_graceful_stop_closes_the_pools(supervise, tmp_path, postgres_url, postgres_cluster):
    dbname = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
    with psycopg.connect(postgres_cluster.url, autocommit=True) as conn:
        # an idle client that vanishes is logged only at DEBUG1: show it for this database
        conn.execute(f'alter database "{dbname}" set log_min_messages = debug1')
    before = postgres_cluster.log().count("unexpected EOF")
    run, port = gunicorn(
        supervise,
        tmp_path,
        CONF.format(migrations=None),
        "-w",
        "2",
        "gapp:app",
        env={"DATABASE_URL": postgres_url},
    )
    wait_line(run, "database pool open", count=2)
    assert get_json(port)["app"].startswith("gapp:worker-")
    assert len(backends(postgres_url)) == 4
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert backends(postgres_url) == []
    assert postgres_cluster.log().count("unexpected EOF") == before


def test_a_bad_migration_exits_before_any_worker_forks(supervise, tmp_path, postgres_url):
    migrations = sql_dir(tmp_path, "create table items (id int);\nselect * from no_such_table;\n")
    run, _ = gunicorn(
        supervise,
        tmp_path,
        CONF.format(migrations=migrations),
        "-w",
        "2",
        "gapp:app",
        env={"DATABASE_URL": with_password(postgres_url)},
    )
    assert run.wait(30) == 5
    out = full_output(run)
    assert "migration 0001_items.sql failed" in out
    assert "Booting worker" not in out
    assert PASSWORD not in out
    with psycopg.connect(postgres_url) as conn:  # rolled back: nothing half-applied
        assert conn.execute("select to_regclass('items')").fetchone() == (None,)


def test_a_hook_defined_after_install_is_refused(supervise, tmp_path, postgres_url):
    conf = CONF.format(migrations=None) + "\ndef pre_fork(server, worker):\n    pass\n"
    run, _ = gunicorn(supervise, tmp_path, conf, "-w", "1", "gapp:app", env={"DATABASE_URL": postgres_url})
    assert run.wait(30) == 2
    assert "pre_fork hook was redefined after install()" in full_output(run)
