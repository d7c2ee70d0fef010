"""PostgreSQL across fork, against a real server."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from supervisor.database import fork_guard
from supervisor.database.pools import Database
from supervisor.errors import ForkSafetyError

from conftest import backends, free_port, wait_until

HOST = socket.gethostname()  # in application_name: app:worker-N@HOST


def test_each_worker_has_its_own_backends_and_the_master_none(supervise, postgres_url):
    run = supervise(
        "dbapp:hold",
        "-w",
        "3",
        "--pool-min-size",
        "2",
        "--pool-max-size",
        "2",
        env={"DATABASE_URL": postgres_url},
    )
    pids = run.wait_ready(3)
    lines = run.wait_event("backend", count=3)
    seen = backends(postgres_url)
    by_app: dict[str, set[int]] = {}
    for pid, app in seen:
        by_app.setdefault(app, set()).add(pid)
    assert set(by_app) == {f"dbapp:worker-{i}@{HOST}" for i in (1, 2, 3)}
    assert all(len(b) == 2 for b in by_app.values())  # min_size reached before ready
    for line in lines:  # each worker's query ran on a backend of its own pool
        assert line["backend_pid"] in by_app[f"dbapp:worker-{line['slot']}@{HOST}"]
        assert pids[line["slot"]] == line["pid"]
    assert not any(":master" in app for app in by_app)
    assert run.wait_event("database pool open", role="worker")  # a worker's line: it may still be in the pipe
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert backends(postgres_url) == []


def test_pool_closes_cleanly_on_stop(supervise, postgres_url, postgres_cluster):
    # PostgreSQL logs an idle client's EOF only at DEBUG1: turn that on for this database
    dbname = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" SET log_min_messages = debug1')
    before = postgres_cluster.log().count("unexpected EOF")
    run = supervise("dbapp:query_loop", "-w", "2", env={"DATABASE_URL": postgres_url})
    run.wait_event("query ok", count=2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert postgres_cluster.log().count("unexpected EOF") == before
    assert backends(postgres_url) == []


def test_fork_guard_closes_what_a_preloaded_app_opened(supervise, postgres_url):
    run = supervise("leaky:main", "-w", "2", "--preload", env={"DATABASE_URL": postgres_url})
    run.wait_ready(2)
    warnings = [e["event"] for e in run.events if e.get("level") == "warning"]
    assert any("closed a PostgreSQL connection open in the master" in w for w in warnings)
    assert any("closed a connection pool open in the master" in w for w in warnings)
    apps = [app for _, app in backends(postgres_url)]
    assert "leaky:import" not in apps and "leaky:pool" not in apps
    assert sorted(set(apps)) == [f"leaky:worker-1@{HOST}", f"leaky:worker-2@{HOST}"]
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_stray_connection_warning_has_no_password(postgres_server):
    """The sweep names what it closed without the password."""
    url = postgres_server.url + " password=hunter2"
    conn = psycopg.connect(url)
    try:
        found = fork_guard.sweep()
    finally:
        conn.close()
    assert found and all("hunter2" not in f for f in found)


def test_naive_shared_connection_breaks_without_the_guard(postgres_url):
    """The seed bug, reproduced: two processes on one inherited connection.
    Either side may be the one that sees the mixed-up protocol stream."""
    conn = psycopg.connect(postgres_url, autocommit=True)
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(go_r, 1)
        code = 0
        deadline = time.monotonic() + 3
        try:
            while time.monotonic() < deadline:
                if conn.execute("select 2").fetchone() != (2,):
                    code = 10
                    break
        except BaseException:
            code = 10
        os._exit(code)
    os.write(go_w, b"x")
    problems = 0

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("waiting for a reply the other process consumed")

    # One documented outcome is a hang: waiting for a reply the child read.
    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 4.0)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not problems:
            try:
                if conn.execute("select 1").fetchone() != (1,):
                    problems += 1
            except (psycopg.Error, TimeoutError):
                problems += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    os.kill(pid, signal.SIGKILL)  # it may hang on a reply the parent consumed
    _, status = os.waitpid(pid, 0)
    child_saw = os.waitstatus_to_exitcode(status) == 10
    conn.pgconn.finish()  # no close(): its protocol state may be anything now
    os.close(go_r)
    os.close(go_w)
    assert problems or child_saw, "sharing a connection across fork went unnoticed"


def test_child_drop_keeps_the_parent_session_and_use_raises(postgres_url):
    """A child that drops (and 'closes') an inherited pool does not end the
    parent's sessions; using the inherited pool raises ForkSafetyError."""
    db = Database(postgres_url, name="parent")
    pool: ConnectionPool = ConnectionPool(postgres_url, min_size=1, open=False)
    pool.open(wait=True)
    db._pool, db._pid = pool, os.getpid()
    parent_backend = pool.connection().__enter__().execute("select pg_backend_pid()").fetchone()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                db.pool  # noqa: B018
            except ForkSafetyError:
                code = 10
            fork_guard.after_fork_in_child()
            db._close()
            os.write(write_fd, b"done")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 10
    assert os.read(read_fd, 10) == b"done"
    with pool.connection() as conn:  # the parent's session still answers
        assert conn.execute("select 1").fetchone() == (1,)
    assert parent_backend is not None
    db._close()
    os.close(read_fd)
    os.close(write_fd)


def _migrations(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


def test_four_masters_at_once_apply_each_migration_once(supervise, postgres_url, tmp_path):
    mig = _migrations(
        tmp_path,
        {
            "0001_runs.sql": "create table runs (id serial primary key, at timestamptz default now());"
            "insert into runs default values; select pg_sleep(0.3);",
            "0002_more.sql": "insert into runs default values;",
        },
    )
    runs = [
        supervise("migrate", "--migrations", str(mig), env={"DATABASE_URL": postgres_url}) for _ in range(4)
    ]
    assert [r.wait(30) for r in runs] == [0, 0, 0, 0]
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select count(*) from runs").fetchone() == (2,)
        rows = conn.execute("select version from supervise_migrations order by 1").fetchall()
    assert rows == [(1,), (2,)]
    assert sum(len(r.find("applying migration")) for r in runs) == 2


def test_a_failing_migration_leaves_nothing_and_forks_nothing(supervise, postgres_url, tmp_path):
    mig = _migrations(
        tmp_path,
        {
            "0001_ok.sql": "create table ok (id int);",
            "0002_bad.sql": "create table half (id int);\ninsert into nope values (1);",
        },
    )
    run = supervise("mains:wait", "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
    assert run.wait() == 5
    final = run.final(5)
    assert final.startswith('migration 0002_bad.sql failed at line 2: relation "nope" does not exist')
    assert "rolled back" in final
    assert not run.find("worker spawned")
    with psycopg.connect(postgres_url) as conn:
        tables = {
            r[0]
            for r in conn.execute("select tablename from pg_tables where schemaname = 'public'").fetchall()
        }
        applied = conn.execute("select version from supervise_migrations").fetchall()
    assert "half" not in tables and "ok" in tables
    assert applied == [(1,)]


def test_concurrent_index_migration_while_another_master_waits(supervise, postgres_url, tmp_path):
    mig = _migrations(
        tmp_path,
        {
            "0001_t.sql": "create table t (id int); insert into t select generate_series(1, 50000);",
            "0002_slow.sql": "select pg_sleep(1);",
            "0003_idx.sql": "-- no-transaction\ncreate index concurrently t_id on t (id);\n"
            "create index concurrently t_id2 on t ((id * 2));",
        },
    )
    env = {"DATABASE_URL": postgres_url}
    first = supervise("migrate", "--migrations", str(mig), env=env)
    first.wait_event("applying migration", file="0002_slow.sql")
    second = supervise("migrate", "--migrations", str(mig), "--migration-lock-timeout", "30", env=env)
    assert first.wait(30) == 0 and second.wait(30) == 0
    assert second.find("waiting for the migration lock") or second.find("migrations up to date")
    assert not any("deadlock" in line for line in first.lines + second.lines)
    with psycopg.connect(postgres_url) as conn:
        idx = conn.execute("select indexname from pg_indexes where tablename = 't' order by 1").fetchall()
    assert idx == [("t_id",), ("t_id2",)]


def test_edited_migration_is_refused_until_accepted(supervise, postgres_url, tmp_path):
    mig = _migrations(tmp_path, {"0001_a.sql": "create table a (id int);\n"})
    env = {"DATABASE_URL": postgres_url}
    assert supervise("migrate", "--migrations", str(mig), env=env).wait() == 0
    (mig / "0001_a.sql").write_bytes(b"create table a (id int);\r\n")  # CRLF only: not an edit
    assert supervise("migrate", "--migrations", str(mig), env=env).wait() == 0
    (mig / "0001_a.sql").write_text("create table a (id bigint);\n")
    run = supervise("migrate", "--migrations", str(mig), env=env)
    assert run.wait() == 5
    assert "migration 0001_a.sql was edited after it was applied" in run.output()
    assert "supervise migrate --accept-edit 1" in run.output()
    assert supervise("migrate", "--migrations", str(mig), "--accept-edit", "1", env=env).wait() == 0
    assert supervise("migrate", "--migrations", str(mig), env=env).wait() == 0


def test_migrate_status_and_dry_run(supervise, postgres_url, tmp_path):
    mig = _migrations(
        tmp_path, {"0001_a.sql": "create table a (id int);", "0002_b.sql": "create table b (id int);"}
    )
    env = {"DATABASE_URL": postgres_url}
    dry = supervise("migrate", "--migrations", str(mig), "--dry-run", env=env)
    assert dry.wait() == 0
    assert dry.find("migrations pending")[0]["pending"] == ["0001_a.sql", "0002_b.sql"]
    status = supervise("migrate", "--migrations", str(mig), "--status", env=env)
    assert status.wait() == 0
    assert "pending   0001_a.sql" in status.output() and "pending   0002_b.sql" in status.output()


def test_callable_migrations_run_under_the_lock(supervise, postgres_url):
    run = supervise(
        "dbapp:hold",
        "-w",
        "1",
        "--migrations",
        "migrations_callable:apply",
        env={"DATABASE_URL": postgres_url},
    )
    run.wait_ready(1)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select count(*) from from_callable").fetchone() == (1,)


def test_budget_refusal_at_start_and_on_ttin(supervise, postgres_url):
    run = supervise(
        "mains:wait",
        "-w",
        "3",
        "--pool-max-size",
        "4",
        "--max-db-connections",
        "10",
        env={"DATABASE_URL": postgres_url},
    )
    assert run.wait() == 2
    final = run.final(2)
    assert final == (
        "connection budget exceeded: 3 workers x pool max size 4 + 1 (migrations) = "
        "13 > 10 (--max-db-connections); lower --workers or --pool-max-size, or raise "
        "--max-db-connections if the server allows more"
    )
    ok = supervise(
        "dbapp:hold",
        "-w",
        "2",
        "--pool-max-size",
        "4",
        "--max-db-connections",
        "10",
        env={"DATABASE_URL": postgres_url},
    )
    ok.wait_ready(2)
    ok.signal(signal.SIGTTIN)
    ok.wait_event("scale-up refused")
    ok.signal(signal.SIGTERM)
    assert ok.wait() == 0
    assert len(ok.find("worker spawned")) == 2


def test_server_not_up_at_start(supervise):
    port = free_port()
    run = supervise(
        "mains:wait",
        "--db-wait-timeout",
        "1.5",
        env={"DATABASE_URL": f"postgresql://app:s3cret@127.0.0.1:{port}/x"},
    )
    assert run.wait() == 5
    assert len(run.find("waiting for PostgreSQL")) >= 2
    final = run.final(5)
    # the cause, not libpq's hint ("Is the server running on that host...?")
    assert final == (
        f"PostgreSQL at postgresql://app:***@127.0.0.1:{port}/x did not accept connections within 1.5 s "
        f'(--db-wait-timeout): connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )
    assert "s3cret" not in run.output()


def test_migrate_waits_for_the_server_like_the_master(supervise, tmp_path):
    port = free_port()
    mig = _migrations(tmp_path, {"0001_a.sql": "create table a (id int);"})
    run = supervise(
        "migrate",
        "--migrations",
        str(mig),
        "--db-wait-timeout",
        "1.5",
        env={"DATABASE_URL": f"postgresql://app:s3cret@127.0.0.1:{port}/x"},
    )
    assert run.wait() == 5
    assert len(run.find("waiting for PostgreSQL")) >= 2
    assert "s3cret" not in run.output()


def test_a_refused_login_is_a_config_error_at_start_and_in_migrate(supervise, postgres_url, tmp_path):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    wrong = make_conninfo(**{**conninfo_to_dict(postgres_url), "user": "nobody", "password": "s3cret"})
    mig = _migrations(tmp_path, {"0001_a.sql": "create table a (id int);"})
    for args in (("mains:wait",), ("migrate", "--migrations", str(mig))):
        run = supervise(*args, "--db-wait-timeout", "30", env={"DATABASE_URL": wrong})
        assert run.wait(15) == 2, args  # at once: waiting cannot fix a role
        assert "refused the connection" in run.output() and "nobody" in run.output()
        assert "does not exist" in run.output()  # the server's own reason
        assert not run.find("waiting for PostgreSQL")
        assert "s3cret" not in run.output()


def test_database_restart_mid_run_needs_no_worker_restart(supervise, postgres_url, postgres_cluster):
    run = supervise("dbapp:query_loop", "-w", "2", "--pool-max-size", "2", env={"DATABASE_URL": postgres_url})
    pids = run.wait_ready(2)
    run.wait_event("query ok", count=2)
    postgres_cluster.restart(stop_first=True)
    restarted = time.monotonic()

    def ok_after_restart() -> bool:
        with run._lock:
            return {
                e["pid"] for e in run.events if e.get("event") == "query ok" and e["_t"] > restarted
            } == set(pids.values())

    # every worker gets answers again (queries are logged every 20th success)
    wait_until(ok_after_restart, 20, "both workers to query successfully after the restart")
    assert run.ready_pids() == pids
    assert not run.find("worker crashed") and not run.find("recycling worker")
    # Connections used within --pool-check-idle are lent untested, so a restart may fail
    # the query in flight on each; the first broken one makes the pool test the rest.
    failed = run.find("query failed")
    assert len(failed) <= 2 * 2, failed
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_usr1_shows_pool_stats(supervise, postgres_url):
    run = supervise("dbapp:query_loop", "-w", "1", env={"DATABASE_URL": postgres_url})
    run.wait_event("query ok")
    run.signal(signal.SIGUSR1)
    stats = run.wait_event("pool stats")[0]
    assert stats["role"] == "worker" and stats["pool_size"] >= 1 and stats["requests_num"] >= 1
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_check_redacts_the_database_url(tmp_path):
    import subprocess
    import sys

    from conftest import APPS

    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISE_")}
    env.update({"PYTHONPATH": str(APPS), "DATABASE_URL": "postgresql://u:topsecret@db/app"})
    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "check", "mains:wait"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0
    assert "postgresql://u:***@db/app" in out.stdout and "env DATABASE_URL" in out.stdout
    assert "topsecret" not in out.stdout + out.stderr


@pytest.fixture(autouse=True)
def _no_threads_left():
    yield
    assert threading.active_count() < 10


def test_async_target_gets_an_async_pool(supervise, postgres_url):
    run = supervise("dbapp:async_queries", "-w", "2", env={"DATABASE_URL": postgres_url})
    lines = run.wait_event("async query ok", count=2)
    assert {e["application_name"] for e in lines} == {f"dbapp:worker-{i}@{HOST}" for i in (1, 2)}
    refused = run.wait_event("sync pool refused", count=2)[0]["error"]
    assert "runs an async target, so its pool is db.async_pool" in refused
    assert run.wait_event("database pool open", kind="async")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert backends(postgres_url) == []


def test_pool_that_cannot_fill_fails_the_boot(supervise, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("drop role if exists limited")
        conn.execute("create role limited login connection limit 1")
    try:
        run = supervise(
            "dbapp:hold",
            "-w",
            "1",
            "--pool-min-size",
            "3",
            "--pool-max-size",
            "3",
            "--pool-timeout",
            "2",
            env={"DATABASE_URL": postgres_url + " user=limited"},
        )
        assert run.wait(20) == 3
        assert "the pool could not open 3 connection(s) within 2 s" in run.final(3)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("drop role limited")


def test_wrong_credentials_fail_at_once_without_retrying(supervise, postgres_url):
    run = supervise("mains:wait", env={"DATABASE_URL": postgres_url + " user=nobody_here"})
    assert run.wait(10) == 2
    assert 'role "nobody_here" does not exist' in run.final(2)
    assert not run.find("waiting for PostgreSQL")


def test_worker_is_recycled_when_the_database_stays_unreachable(supervise, postgres_url, postgres_cluster):
    run = supervise(
        "dbapp:unreachable",
        "-w",
        "1",
        "--pool-reconnect-timeout",
        "1",
        "--pool-timeout",
        "1",
        env={"DATABASE_URL": postgres_url},
    )
    run.wait_ready(1)
    postgres_cluster.stop_server()
    try:
        run.wait_event("recycling worker", timeout=30)
    finally:
        postgres_cluster.restart()
    assert run.wait_event("database unreachable past --pool-reconnect-timeout; asking to be replaced")
    run.signal(signal.SIGTERM)
    assert run.wait(30) == 0


def test_alembic_upgrades_once_under_the_lock(supervise, postgres_url):
    from conftest import APPS

    spec = f"alembic:{APPS / 'alembic_project' / 'alembic.ini'}"
    env = {"DATABASE_URL": postgres_url}
    dry = supervise("migrate", "--migrations", spec, "--dry-run", env=env)
    assert dry.wait(30) == 0
    assert dry.find("migrations pending")[0]["pending"] == ["0001", "0002"]
    runs = [supervise("migrate", "--migrations", spec, env=env) for _ in range(3)]
    assert [r.wait(60) for r in runs] == [0, 0, 0]
    assert sum(len(r.find("applying alembic migrations")) for r in runs) == 1
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select count(*) from widgets").fetchone() == (1,)
        assert conn.execute("select version_num from alembic_version").fetchall() == [("0002",)]


def test_pool_stats_are_logged_periodically(supervise, postgres_url):
    run = supervise(
        "dbapp:query_loop", "-w", "1", "--pool-stats-interval", "0.3", env={"DATABASE_URL": postgres_url}
    )
    lines = run.wait_event("pool stats", count=2)
    assert all(e["role"] == "worker" and e["database"] == "db" for e in lines)
    assert sum(e["requests_num"] for e in lines) >= 1
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_term_interrupts_the_wait_for_the_database(supervise):
    port = free_port()
    run = supervise(
        "mains:wait", "--db-wait-timeout", "60", env={"DATABASE_URL": f"postgresql://app@127.0.0.1:{port}/x"}
    )
    run.wait_event("waiting for PostgreSQL")
    started = time.monotonic()
    run.signal(signal.SIGTERM)
    assert run.wait(10) == 0
    assert time.monotonic() - started < 3
    assert run.find("stopped before any worker started", signal="SIGTERM")
    assert not run.find("worker spawned")


def test_a_malformed_url_is_a_config_error_without_the_password(supervise):
    run = supervise("mains:wait", env={"DATABASE_URL": "postgresql://app:s3cr%ZZet@127.0.0.1/x"})
    assert run.wait(10) == 2
    assert "is not usable" in run.output()  # refused with the settings, before any connection
    assert "s3cr" not in run.output()


def test_a_target_typo_fails_before_migrating(supervise, postgres_url, tmp_path):
    mig = _migrations(tmp_path, {"0001_a.sql": "create table a (id int);"})
    run = supervise("mainz:wait", "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
    assert run.wait() == 4
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select to_regclass('supervise_migrations')").fetchone() == (None,)


def test_an_app_database_is_the_worker_database_with_one_pool(supervise, postgres_url):
    run = supervise(
        "own_db:main",
        "-w",
        "2",
        "--pool-min-size",
        "2",
        "--pool-max-size",
        "2",
        env={"DATABASE_URL": postgres_url},
    )
    lines = run.wait_event("own database", count=2)
    assert all(e["same"] for e in lines)
    per_worker: dict[str, int] = {}
    for _, app in backends(postgres_url):
        per_worker[app] = per_worker.get(app, 0) + 1
    assert per_worker == {f"own_db:worker-1@{HOST}": 2, f"own_db:worker-2@{HOST}": 2}
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_term_during_a_migration_cancels_it_on_the_server(supervise, postgres_url, tmp_path):
    mig = _migrations(tmp_path, {"0001_slow.sql": "create table slow (id int); select pg_sleep(30);"})
    run = supervise("mains:wait", "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
    run.wait_event("applying migration")
    time.sleep(0.2)  # let the statement reach the server (a lead, not a sync point)
    started = time.monotonic()
    run.signal(signal.SIGTERM)
    assert run.wait(10) == 0
    assert time.monotonic() - started < 5
    assert not run.find("worker spawned")
    # nothing of it stayed: no table, no row, no statement still running, lock free
    wait_until(
        lambda: not [a for _, a in backends(postgres_url) if ":migrate" in a],
        5,
        "the migration session to end",
    )
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select to_regclass('slow')").fetchone() == (None,)
    again = supervise(
        "migrate",
        "--migrations",
        str(mig),
        "--migration-lock-timeout",
        "1",
        "--dry-run",
        env={"DATABASE_URL": postgres_url},
    )
    assert again.wait(10) == 0
