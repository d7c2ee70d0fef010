"""Expand/contract across the fleet: an old-generation master and new ones on
one database. The expand applies at once; the contract waits while the old
code serves, then applies exactly once within the lease after it stops,
however many new masters race for it. Real processes, real PostgreSQL."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from conftest import Run, wait_until

LEASE = 3.0
CONTRACT = "-- contract: nothing has read legacy since the expand\nalter table users drop column legacy;\n"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """The old code's migrations, and the new code's: an expand and a contract more."""
    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):
        d.mkdir()
        (d / "0001_users.sql").write_text("create table users (id int, legacy text);\n")
    (new / "0002_note.sql").write_text("alter table users add column note text;\n")
    (new / "0003_drop_legacy.sql").write_text(CONTRACT)
    return old, new


def _master(supervise, url: str, host: str, mig: Path) -> Run:
    return supervise(
        "mains:wait",
        "-w",
        "1",
        "--fleet-host",
        host,
        "--fleet-lease",
        str(LEASE),
        "--migrations",
        str(mig),
        env={"DATABASE_URL": url},
    )


def _columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select attname from pg_attribute where attrelid = 'users'::regclass and attnum > 0 "
            "and not attisdropped order by attnum"
        ).fetchall()
    return [r[0] for r in rows]


def _recorded(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select version from supervise_migrations order by 1")]


def _applied(run: Run) -> list[dict]:
    return run.find("migration applied", file="0003_drop_legacy.sql")


def test_the_contract_waits_for_the_old_code_then_applies_when_it_stops(
    supervise, postgres_url: str, dirs: tuple[Path, Path]
):
    old_dir, new_dir = dirs
    old = _master(supervise, postgres_url, "old", old_dir)
    old.wait_ready(1)
    new = _master(supervise, postgres_url, "new", new_dir)
    new.wait_ready(1)  # a pending contract never delays a start
    pending = new.find("contract migration pending")
    assert [(p["file"], p["waits_for"]) for p in pending] == [("0003_drop_legacy.sql", f"old pid {old.pid}")]
    assert _columns(postgres_url) == ["id", "legacy", "note"]  # the expand, at once; not the contract
    assert _recorded(postgres_url) == [1, 2]

    env = {"DATABASE_URL": postgres_url}
    status = supervise("migrate", "--migrations", str(new_dir), "--status", env=env)
    assert status.wait(30) == 0
    assert f"     3  pending   0003_drop_legacy.sql  contract: waits for old pid {old.pid}" in status.lines
    fleet = supervise("status", "--fleet", "--migrations", str(new_dir), env=env)
    assert fleet.wait(30) == 0
    assert f"contract migration 0003_drop_legacy.sql pending: waits for old pid {old.pid}" in fleet.lines
    assert any(line.startswith("mains/") and " new " in line and "up to 3" in line for line in fleet.lines)
    # the deploy step finds it pending too, and leaves it
    job = supervise("migrate", "--migrations", str(new_dir), env=env)
    assert job.wait(30) == 0 and job.find("contract migration pending")
    assert _columns(postgres_url) == ["id", "legacy", "note"] and not _applied(new)

    old.signal(signal.SIGTERM)  # a clean stop deletes its row
    assert old.wait() == 0
    stopped = time.monotonic()
    new.wait_event("migration applied", file="0003_drop_legacy.sql", timeout=LEASE + 5)
    assert _applied(new)[0]["_t"] - stopped < LEASE
    assert _columns(postgres_url) == ["id", "note"] and _recorded(postgres_url) == [1, 2, 3]
    new.signal(signal.SIGTERM)
    assert new.wait() == 0


def test_three_new_masters_race_and_the_contract_applies_once_within_the_lease_of_a_killed_one(
    supervise, postgres_url: str, dirs: tuple[Path, Path]
):
    old_dir, new_dir = dirs
    old = _master(supervise, postgres_url, "old", old_dir)
    old.wait_ready(1)
    news = [_master(supervise, postgres_url, f"new-{i}", new_dir) for i in range(3)]
    for run in news:
        run.wait_ready(1)
    assert sum(len(run.find("applying migration", file="0002_note.sql")) for run in news) == 1
    old.signal(signal.SIGKILL)  # no clean stop: its row counts until its lease ends
    killed = time.monotonic()
    wait_until(lambda: any(_applied(run) for run in news), LEASE + 5, "the contract to be applied")
    first = min(event["_t"] for run in news for event in _applied(run))
    assert first - killed < LEASE + 0.5
    # the others find it applied; nobody applies it twice or fails on it
    wait_until(lambda: all(not run.find("contract migration pending") or _settled(run) for run in news), 10)
    assert sum(len(_applied(run)) for run in news) == 1
    assert not any(
        run.find("contract migration failed; it is retried by the next start or supervise migrate")
        for run in news
    )
    assert _columns(postgres_url) == ["id", "note"] and _recorded(postgres_url) == [1, 2, 3]
    for run in news:
        run.signal(signal.SIGTERM)
    assert [run.wait() for run in news] == [0, 0, 0]


def _settled(run: Run) -> bool:
    return bool(run.find("every contract migration is applied"))


def test_a_master_older_than_the_column_counts_as_old_code(
    supervise, postgres_url: str, dirs: tuple[Path, Path]
):
    """An existing deployment: the fleet's table has no migrations column, and
    a live row of a master from before it. The column is added on the next
    reservation (nullable: no rewrite); the old row blocks the contract until
    its lease ends."""
    _, new_dir = dirs
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "create table supervise_fleet (fleet text not null, host text not null, pid integer not null, "
            "workers integer not null, pool_max integer not null, reserved integer not null, "
            "lease_s double precision not null, started_at timestamptz not null default now(), "
            "heartbeat_at timestamptz not null default now(), primary key (fleet, host, pid))"
        )
        conn.execute("insert into supervise_fleet values ('shop/app', 'ghost', 7, 1, 1, 2, %s)", (LEASE,))
        inserted = time.monotonic()
    new = _master(supervise, postgres_url, "new", new_dir)
    new.wait_ready(1)
    assert (
        new.find("contract migration pending")[0]["waits_for"] == "ghost pid 7 (no record of its migrations)"
    )
    new.wait_event("migration applied", file="0003_drop_legacy.sql", timeout=LEASE + 5)
    assert _applied(new)[0]["_t"] - inserted < LEASE + 0.5
    with psycopg.connect(postgres_url) as conn:
        mine = conn.execute("select migrations from supervise_fleet where host = 'new'").fetchone()
    assert mine == ([1, 2, 3],)
    new.signal(signal.SIGTERM)
    assert new.wait() == 0
