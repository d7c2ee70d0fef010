"""The lock rule: a migration waiting for a table's lock never makes the
queries queued behind it wait longer than --table-lock-timeout; it is rolled
back, retried with backoff naming what holds the lock, and after its attempts
it fails with exit 5, nothing half-applied. Real PostgreSQL, real `supervise`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import APPS, Run, wait_until

TIMEOUT_MS = 250  # the default --table-lock-timeout
SLACK_S = 0.1  # the bound: the lock timeout + 100 ms


def _dir(tmp_path: Path, files: dict[str, str]) -> Path:
    mig = tmp_path / "mig"
    mig.mkdir(exist_ok=True)
    for name, body in files.items():
        (mig / name).write_text(body)
    return mig


@pytest.fixture
def tables(postgres_url: str) -> str:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("create table a (id int); create table t (id int); insert into t values (1), (2)")
    return postgres_url


@pytest.fixture
def holder(tables: str) -> Iterator[psycopg.Connection]:
    """A long transaction (a report, pg_dump) that has read t: it holds ACCESS SHARE until it ends."""
    with psycopg.connect(tables, application_name="report") as conn:
        conn.execute("select count(*) from t")
        yield conn


def _waiting(url: str) -> bool:
    """The migration's connection is waiting for a lock now."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity "
            "where application_name like %s and wait_event_type = 'Lock'",
            ("%:migrate%",),
        ).fetchone()
    return bool(row and row[0])


class Reader(threading.Thread):
    """``select count(*) from TABLE`` on a connection opened beforehand; the
    time it took, from the moment it was sent."""

    def __init__(self, url: str, table: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.table = table
        self.waited: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        self.conn.execute(f"select count(*) from {self.table}")
        self.waited = time.monotonic() - started
        self.conn.close()


def _readers_behind_the_waiting_migration(url: str) -> list[Reader]:
    wait_until(lambda: _waiting(url), 20, "the migration to wait for its lock")
    readers = [Reader(url, "t"), Reader(url, "a")]
    for reader in readers:
        reader.start()
    return readers


def _columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
            "and not attisdropped order by attnum",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


def test_a_reader_never_waits_longer_than_the_lock_timeout_behind_a_blocked_migration(
    supervise, tables: str, holder: psycopg.Connection, tmp_path: Path
):
    # a holds the first statement's lock while the second waits for t: a reader
    # of either table is queued behind the migration
    mig = _dir(tmp_path, {"0001_x.sql": "alter table a add column x int;\nalter table t add column x int;\n"})
    run: Run = supervise("migrate", "--migrations", str(mig), env={"DATABASE_URL": tables})
    readers = _readers_behind_the_waiting_migration(tables)
    for reader in readers:
        reader.join(10)
    waits = {r.table: r.waited for r in readers}
    assert all(w is not None and w < TIMEOUT_MS / 1000 + SLACK_S for w in waits.values()), waits
    retry = run.wait_event("migration gave up waiting for a lock; retrying")[0]
    assert retry["line"] == 2 and retry["attempt"] == 1 and retry["lock_timeout_ms"] <= TIMEOUT_MS
    assert retry["held_by"].startswith(
        f"pid {holder.info.backend_pid} report (role postgres), idle in transaction, in a transaction for "
    )
    assert "holding AccessShareLock on t" in retry["held_by"]
    holder.commit()  # the report ends: the next attempt goes through
    assert run.wait(60) == 0, run.output()
    assert _columns(tables, "a") == ["id", "x"] and _columns(tables, "t") == ["id", "x"]


def test_without_the_lock_timeout_readers_queue_for_as_long_as_the_holder_runs(
    supervise, tables: str, holder: psycopg.Connection, tmp_path: Path
):
    """What the rule prevents (--table-lock-timeout 0 is the old behaviour)."""
    mig = _dir(tmp_path, {"0001_x.sql": "alter table t add column x int;\n"})
    run = supervise(
        "migrate", "--migrations", str(mig), "--table-lock-timeout", "0", env={"DATABASE_URL": tables}
    )
    readers = _readers_behind_the_waiting_migration(tables)
    held_since = time.monotonic()
    readers[0].join(TIMEOUT_MS / 1000 + SLACK_S + 0.5)
    assert readers[0].waited is None  # still queued behind the waiting ALTER
    holder.commit()
    readers[0].join(10)
    assert readers[0].waited is not None and readers[0].waited >= time.monotonic() - held_since - 0.2
    assert run.wait(60) == 0 and not run.find("migration gave up waiting for a lock; retrying")


def test_a_holder_that_never_ends_is_named_after_the_last_attempt_and_nothing_is_applied(
    supervise, tables: str, holder: psycopg.Connection, tmp_path: Path
):
    mig = _dir(
        tmp_path,
        {
            "0001_ok.sql": "create table before_it (id int);\n",
            "0002_x.sql": "-- the first statement succeeds each time, and is undone each time\n"
            "alter table a add column x int;\nalter table t add column x int;\n",
        },
    )
    run = supervise(
        "migrate", "--migrations", str(mig), "--table-lock-attempts", "3", env={"DATABASE_URL": tables}
    )
    assert run.wait(60) == 5, run.output()
    pid = holder.info.backend_pid
    errors = [line for line in run.lines if line.startswith("supervise: error: ")]
    assert len(errors) == 1 and "Traceback" not in run.output()
    error = errors[0].removeprefix("supervise: error: ")
    assert error.startswith(
        "migration 0002_x.sql: the statement at line 3 could not take its lock in 3 attempts of 250 ms "
        f"(--table-lock-timeout, --table-lock-attempts); held by pid {pid} report (role postgres), idle in "
        "transaction, in a transaction for "
    )
    assert error.endswith(
        "holding AccessShareLock on t, blocking since attempt 1; rolled back; nothing of it was applied; "
        f"run it again when that session is done, or end it with select pg_terminate_backend({pid})"
    )
    assert [e["attempt"] for e in run.find("migration gave up waiting for a lock; retrying")] == [1, 2]
    assert _columns(tables, "a") == ["id"] and _columns(tables, "t") == ["id"]
    with psycopg.connect(tables) as conn:
        assert conn.execute("select version from supervise_migrations").fetchall() == [(1,)]


def test_a_no_transaction_file_is_retried_statement_by_statement(
    supervise, tables: str, holder: psycopg.Connection, tmp_path: Path
):
    mig = _dir(
        tmp_path,
        {
            "0001_x.sql": "-- no-transaction\n"
            "alter table a add column x int;\n"  # run once: a second run would fail (it exists)
            "alter table t add column x int;\n"
        },
    )
    run = supervise("migrate", "--migrations", str(mig), env={"DATABASE_URL": tables})
    retry = run.wait_event("migration gave up waiting for a lock; retrying")[0]
    assert retry["line"] == 3
    assert _columns(tables, "a") == ["id", "x"]  # applied, and kept while the next one waits
    holder.commit()
    assert run.wait(60) == 0, run.output()
    assert _columns(tables, "t") == ["id", "x"]


def test_a_concurrent_index_waits_for_writers_instead_of_timing_out(supervise, tables: str, tmp_path: Path):
    """CREATE INDEX CONCURRENTLY makes no read or write queue; cut short by the
    lock timeout it would leave an INVALID index, so it gets no limit."""
    mig = _dir(tmp_path, {"0001_i.sql": "-- no-transaction\ncreate index concurrently t_id on t (id);\n"})
    with psycopg.connect(tables) as writer:
        writer.execute("insert into t values (3)")  # an open write: the build waits for it
        run = supervise("migrate", "--migrations", str(mig), env={"DATABASE_URL": tables})
        wait_until(lambda: _waiting(tables), 20, "the build to wait for the writer")
        waited_from = time.monotonic()
        # four lock timeouts later it still waits, and has not given up
        wait_until(lambda: time.monotonic() - waited_from > 4 * TIMEOUT_MS / 1000 and _waiting(tables), 10)
        assert not run.find("migration gave up waiting for a lock; retrying")
        with psycopg.connect(tables, autocommit=True) as conn:  # reads and writes go on meanwhile
            conn.execute("insert into t values (4)")
            assert conn.execute("select count(*) from t").fetchone() == (3,)
    assert run.wait(60) == 0, run.output()
    with psycopg.connect(tables) as conn:
        valid = conn.execute("select indisvalid from pg_index where indexrelid = 't_id'::regclass").fetchone()
    assert valid == (True,)


def test_a_callable_runs_under_the_lock_timeout_and_is_retried(
    supervise, tables: str, holder, tmp_path: Path
):
    (tmp_path / "lockcall.py").write_text(
        "def apply(conn):\n"
        "    conn.execute('create table if not exists seen (lock_timeout text)')\n"
        "    conn.execute(\"insert into seen values (current_setting('lock_timeout'))\")\n"
        "    conn.execute('alter table t add column if not exists x int')\n"
    )
    run = supervise(
        "migrate",
        "--migrations",
        "lockcall:apply",
        env={"DATABASE_URL": tables, "PYTHONPATH": f"{tmp_path}:{APPS}"},
    )
    retry = run.wait_event("migration gave up waiting for a lock; retrying")[0]
    assert retry["migration"] == "migration callable lockcall:apply"
    holder.commit()
    assert run.wait(60) == 0, run.output()
    with psycopg.connect(tables) as conn:
        seen = {r[0] for r in conn.execute("select lock_timeout from seen")}
    assert seen == {"250ms"} and _columns(tables, "t") == ["id", "x"]


def test_a_statement_after_a_long_one_is_told_why_its_budget_was_short(
    supervise, tables: str, holder: psycopg.Connection, tmp_path: Path
):
    """The budget is the attempt's: a long statement before the one that waits
    leaves it little, and the error says to give the long one its own file."""
    mig = _dir(tmp_path, {"0001_x.sql": "select pg_sleep(0.3);\nalter table t add column x int;\n"})
    run = supervise(
        "migrate", "--migrations", str(mig), "--table-lock-attempts", "2", env={"DATABASE_URL": tables}
    )
    assert run.wait(60) == 5
    assert run.find("migration gave up waiting for a lock; retrying")[0]["lock_timeout_ms"] == 1
    (error,) = [line for line in run.lines if line.startswith("supervise: error: ")]
    assert (
        "could not take its lock in 2 attempts of 250 ms (it had 1 ms left: the statements before it in "
        "the file used the rest; give a long statement a file of its own)"
    ) in error
