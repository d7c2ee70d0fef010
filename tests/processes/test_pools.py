"""--pool-check-idle: a recently used connection is lent without a round trip, a
stale one is tested and replaced, and one that broke in the window fails its
first use only, which retry_transient absorbs. Against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import stamina

from supervisor import retry_transient
from supervisor.database.checked_pool import AsyncCheckedPool, CheckedPool
from supervisor.testing.launch import wait_until

MARK = "select pg_backend_pid() /* lent-mark */"


@contextmanager
def _pool(url: str, window: float, size: int = 1) -> Iterator[CheckedPool]:
    # autocommit, so the server's "last query" of a backend is ours, not a COMMIT
    pool = CheckedPool(
        check_idle=window, conninfo=url, min_size=size, max_size=size, open=False, kwargs={"autocommit": True}
    )
    pool.open(wait=True, timeout=10)
    try:
        yield pool
    finally:
        pool.close()


def _last_query(url: str, pid: int) -> str:
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute("select query from pg_stat_activity where pid = %s", (pid,)).fetchone()
    assert row is not None, f"backend {pid} is gone"
    return str(row[0])


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", (pid,))
        wait_until(
            lambda: not admin.execute("select 1 from pg_stat_activity where pid = %s", (pid,)).fetchone(),
            10,
            f"backend {pid} to exit",
        )


@pytest.mark.parametrize(("window", "round_trip"), [(60.0, False), (0.0, True)])
def test_a_recently_used_connection_is_lent_without_a_round_trip(postgres_url, window, round_trip):
    with _pool(postgres_url, window) as pool:
        with pool.connection() as conn:
            (pid,) = conn.execute(MARK).fetchone()  # type: ignore[misc]
        with pool.connection() as conn:
            # lent, not used yet: what did the server see since our query?
            last = _last_query(postgres_url, pid)
    # check_connection sends an empty query; without it our query is still the last
    assert last == ("" if round_trip else MARK)


def test_the_async_pool_skips_the_round_trip_too(postgres_url):
    async def scenario(window: float) -> str:
        pool = AsyncCheckedPool(
            check_idle=window,
            conninfo=postgres_url,
            min_size=1,
            max_size=1,
            open=False,
            kwargs={"autocommit": True},
        )
        await pool.open(wait=True, timeout=10)
        try:
            async with pool.connection() as conn:
                pid = (await (await conn.execute(MARK)).fetchone())[0]  # type: ignore[index]
            async with pool.connection() as conn:
                return await asyncio.to_thread(_last_query, postgres_url, pid)
        finally:
            await pool.close()

    assert asyncio.run(scenario(60.0)) == MARK
    assert asyncio.run(scenario(0.0)) == ""


def test_an_idle_connection_killed_by_the_server_is_replaced_on_checkout(postgres_url):
    with _pool(postgres_url, 0.05) as pool:
        with pool.connection() as conn:
            (old,) = conn.execute("select pg_backend_pid()").fetchone()  # type: ignore[misc]
        _terminate(postgres_url, old)
        wait_until(lambda: not pool.idle_clock.trusted(conn), 5, "the connection to pass the idle window")
        with pool.connection() as conn:  # no error: the check caught it
            (new,) = conn.execute("select pg_backend_pid()").fetchone()  # type: ignore[misc]
        assert new != old
        assert pool.get_stats().get("connections_lost") == 1


def test_a_connection_killed_in_the_window_fails_once_and_the_retry_gets_a_fresh_one(postgres_url):
    stamina.set_testing(True, attempts=3)
    try:
        with _pool(postgres_url, 60.0) as pool:
            with pool.connection() as conn:
                (old,) = conn.execute("select pg_backend_pid()").fetchone()  # type: ignore[misc]
            _terminate(postgres_url, old)
            errors: list[str] = []

            @retry_transient()
            def work() -> Any:
                with pool.connection() as conn:
                    try:
                        return conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
                    except psycopg.Error as exc:
                        errors.append(type(exc).__name__)
                        raise

            new = work()
            assert new != old
            assert len(errors) == 1, errors  # trusted in the window, so the first use is what failed
    finally:
        stamina.set_testing(False)


def test_one_broken_connection_makes_the_pool_test_the_others(postgres_url):
    """After a server restart every idle connection is dead: only the first use fails."""
    with _pool(postgres_url, 60.0, size=2) as pool:
        with pool.connection() as a, pool.connection() as b:
            pids = [c.execute("select pg_backend_pid()").fetchone()[0] for c in (a, b)]  # type: ignore[index]
        for pid in pids:
            _terminate(postgres_url, pid)
        with pytest.raises(psycopg.OperationalError), pool.connection() as conn:
            conn.execute("select 1")
        with pool.connection() as conn:  # the other dead one is tested, not lent
            (pid,) = conn.execute("select pg_backend_pid()").fetchone()  # type: ignore[misc]
        assert pid not in pids


def test_the_setting_reaches_each_workers_pool(postgres_url):
    from supervisor import Database
    from supervisor.settings.config import Config
    from supervisor.settings.load import from_text

    assert from_text("pool_check_idle", "604800", "test") == 604800  # the documented "never"
    db = Database(postgres_url, name="checked")
    db._open(1, Config(target="a:b", pool_check_idle=0.5), on_unreachable=lambda: None)
    try:
        assert isinstance(db.pool, CheckedPool) and db.pool.idle_clock.window == 0.5
    finally:
        db._close()
