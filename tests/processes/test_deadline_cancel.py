"""A unit of work's deadline against a real PostgreSQL: ``worker.deadline``
(a job's, sync and async) cancels the query still running when it passes,
and a connection whose query a cancel was sent for is not lent again before
the cancel has landed (else the cancel could hit the next borrower's query)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import psycopg
import pytest
from psycopg import errors

from supervisor.database.checked_pool import AsyncCheckedPool, CheckedPool
from supervisor.worker import time_budget
from supervisor.worker.time_budget import EXPIRED, Deadline, TimeBudget, current


def test_a_jobs_deadline_cancels_its_running_query(postgres_url: str):
    with CheckedPool(conninfo=postgres_url, min_size=1, max_size=1, check_idle=5, open=True) as pool:
        began = time.monotonic()
        with pytest.raises(errors.QueryCanceled), Deadline(0.3) as budget, pool.connection() as conn:
            conn.execute("select pg_sleep(10)")
        assert time.monotonic() - began < 3 and budget.outcome == EXPIRED and budget.interrupted
        with pool.connection() as conn:  # the connection is whole, and nothing is cancelled later
            assert conn.execute("select 1").fetchone() == (1,)


def test_an_async_jobs_deadline_cancels_its_task_and_its_query(postgres_url: str):
    async def scenario() -> tuple[float, str | None]:
        async with AsyncCheckedPool(conninfo=postgres_url, min_size=1, max_size=1, check_idle=5) as pool:
            began = time.monotonic()
            with pytest.raises(TimeoutError):
                async with Deadline(0.3) as budget, pool.connection() as conn:
                    await conn.execute("select pg_sleep(10)")
            took = time.monotonic() - began
            async with pool.connection() as conn:
                cur = await conn.execute("select 1")
                assert await cur.fetchone() == (1,)
            return took, budget.outcome

    took, outcome = asyncio.run(scenario())
    assert took < 3 and outcome == EXPIRED


def test_a_connection_is_not_lent_again_before_a_cancel_of_its_query_lands(postgres_url: str):
    """The race: the request thread finishes its query and returns the
    connection just as a cancel for it is claimed elsewhere. The pool must not
    lend it until that cancel was delivered (PostgreSQL ignores a cancel that
    reaches an idle session)."""
    with CheckedPool(conninfo=postgres_url, min_size=1, max_size=1, check_idle=5, open=True) as pool:
        budget = TimeBudget(time.monotonic(), time.monotonic() + 30)
        token = current.set(budget)
        try:
            conn = pool.getconn()
            assert budget.conn is conn
            delivered = threading.Event()
            time_budget._cancelling[id(conn)] = delivered  # a cancel claimed, still on its way
            returned = threading.Event()
            request = contextvars.copy_context()  # the request thread's: its budget is current
            returner = threading.Thread(target=lambda: (request.run(pool.putconn, conn), returned.set()))
            returner.start()
            assert not returned.wait(0.3), "the connection went back before its cancel landed"
            time_budget._cancelling.pop(id(conn))
            delivered.set()
            assert returned.wait(5)
            returner.join()
        finally:
            current.reset(token)
        assert budget.conn is None
        with pool.connection() as again:
            assert again.execute("select 1").fetchone() == (1,)


def test_a_cancel_is_claimed_only_for_a_query_that_runs(postgres_url: str):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        budget = TimeBudget(time.monotonic(), time.monotonic() + 30, conn=conn)
        assert not time_budget.cancel_running_query(budget)  # idle: nothing to cancel, nothing claimed
        assert id(conn) not in time_budget._cancelling
