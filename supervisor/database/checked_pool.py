"""Pools that test a connection on checkout only when it may have gone stale.

psycopg_pool's ``check_connection`` costs one round trip to the server on
every checkout; with one short query per request that is half the database
time. A connection returned to the pool moments ago is almost surely alive:
what kills connections behind a pool's back (idle timeouts in the server,
PgBouncer or a firewall, a DBA's ``pg_terminate_backend``) mostly strikes
connections that sat unused, and a server restart breaks the busy ones as
well as the idle ones whatever the pool checks. So, like HikariCP's
alive-bypass window, a connection is tested only when it has been idle for
``--pool-check-idle`` seconds or more, or when its pool has reason to distrust
it: one of its connections was just found broken (after a restart the others
are broken too), or it has never been seen working.

A connection that breaks in the window fails its first use: psycopg_pool
replaces a connection that comes back broken, and the work can be retried on
a fresh one with :func:`supervisor.database.retry.retry_transient`.

Connections are stamped in ``putconn`` (before the pool can hand them to a
waiting client), not with a ``reset`` callback: psycopg_pool moves returns
with a ``reset`` callback to its background workers, which is a thread
hand-off per request.

A checkout made for a request (``time_budget.current``) waits at most what is
left of its deadline, and the request knows the connection it holds, so it
can be cancelled in PostgreSQL when the request ends early. An async pool
also has a gate (``worker/admission.py``) with as many permits as the pool
has connections at most: every wait for a connection happens in the gate's
managed queue, and psycopg_pool's own queue never fills.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout, TooManyRequests

from supervisor.worker.time_budget import SHED, current, returning

if TYPE_CHECKING:
    from supervisor.worker.admission import Gate
    from supervisor.worker.time_budget import TimeBudget

SyncConn = psycopg.Connection[Any]
AsyncConn = psycopg.AsyncConnection[Any]


class IdleClock:
    """When each connection of one pool was last seen working, and since when
    the pool trusts none of them.

    Reads and writes are single dictionary operations, safe under the GIL from
    the request threads and the pool's own workers alike.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
        self._distrust_before = -math.inf

    def trusted(self, conn: object) -> bool:
        """True when ``conn`` may be lent without a round trip."""
        seen = self._seen.get(conn)
        return seen is not None and seen > self._distrust_before and time.monotonic() - seen < self.window

    def seen_working(self, conn: object) -> None:
        self._seen[conn] = time.monotonic()

    def distrust_all(self) -> None:
        """Test every connection the pool holds now before lending it."""
        self._distrust_before = time.monotonic()

    def returned(self, conn: SyncConn | AsyncConn) -> None:
        if conn.broken:
            self.distrust_all()
        else:
            self.seen_working(conn)


class CheckedPool(ConnectionPool[SyncConn]):
    """A ``ConnectionPool`` that tests only connections idle ``check_idle`` seconds or more
    (0: every checkout, like ``check=ConnectionPool.check_connection``)."""

    def __init__(
        self,
        *,
        check_idle: float,
        configure: Callable[[SyncConn], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.idle_clock = IdleClock(check_idle)
        user_configure = configure

        def configured(conn: SyncConn) -> None:
            if user_configure is not None:
                user_configure(conn)
            self.idle_clock.seen_working(conn)

        super().__init__(check=self._check_if_stale, configure=configured, **kwargs)

    def _check_if_stale(self, conn: SyncConn) -> None:
        if self.idle_clock.trusted(conn):
            return
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            self.idle_clock.distrust_all()
            raise

    def getconn(self, timeout: float | None = None) -> SyncConn:
        budget = current.get()
        if budget is None:
            return super().getconn(timeout)
        if budget.outcome is not None:
            raise PoolTimeout(f"the request has ended ({budget.outcome}): no connection for it")
        left = budget.remaining()
        if left <= 0:
            raise PoolTimeout("the request's deadline passed before it got a connection")
        conn = super().getconn(min(timeout if timeout is not None else self.timeout, left))
        budget.conn = conn  # so the loop can cancel its query if the request ends early
        return conn

    def putconn(self, conn: SyncConn) -> None:
        self.idle_clock.returned(conn)
        returning(conn)  # not lent again before a cancel claimed for its query lands
        super().putconn(conn)


class AsyncCheckedPool(AsyncConnectionPool[AsyncConn]):
    """The asyncio twin of :class:`CheckedPool`."""

    def __init__(
        self,
        *,
        check_idle: float,
        configure: Callable[[AsyncConn], Awaitable[None]] | None = None,
        gate: Gate | None = None,
        **kwargs: Any,
    ) -> None:
        self.idle_clock = IdleClock(check_idle)
        self.gate = gate
        user_configure = configure

        async def configured(conn: AsyncConn) -> None:
            if user_configure is not None:
                await user_configure(conn)
            self.idle_clock.seen_working(conn)

        super().__init__(check=self._check_if_stale, configure=configured, **kwargs)

    async def _check_if_stale(self, conn: AsyncConn) -> None:
        if self.idle_clock.trusted(conn):
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            self.idle_clock.distrust_all()
            raise

    async def getconn(self, timeout: float | None = None) -> AsyncConn:
        gate, budget = self.gate, current.get()
        if gate is None:
            return await super().getconn(timeout)
        admitted = gate.poll(budget)
        if admitted is None:
            wait = timeout if timeout is not None else self.timeout
            if _watched_sooner(budget, wait):
                # its deadline's watch ends this wait first: no timer of our own per waiter
                admitted = await gate.wait(budget)
            else:
                try:
                    async with asyncio.timeout(wait):
                        admitted = await gate.wait(budget)
                except TimeoutError:
                    raise PoolTimeout(f"no connection within {wait:g} s") from None
        if not admitted:
            if budget is not None:
                budget.end(SHED)  # its answer is a 503 (http/deadlines.py)
            raise TooManyRequests("overloaded: the request was refused a connection")
        try:
            conn = await super().getconn(timeout)
        except BaseException:
            gate.release()
            raise
        gate.hold(id(conn))
        if budget is not None:
            budget.conn, budget.running = conn, True
        return conn

    async def putconn(self, conn: AsyncConn) -> None:
        self.idle_clock.returned(conn)
        budget = current.get()
        if budget is not None and budget.conn is conn:
            budget.conn = None
        gate = self.gate
        if gate is not None:
            gate.unhold(id(conn))
        try:
            await super().putconn(conn)
        finally:
            if gate is not None:
                gate.release()  # after the connection is back: the next permit finds it


def _watched_sooner(budget: TimeBudget | None, wait: float) -> bool:
    """Whether ``budget``'s deadline is watched (its task is cancelled then)
    and comes before ``wait`` seconds from now."""
    return (
        budget is not None
        and budget.watch is not None
        and not budget.responding
        and budget.due() <= time.monotonic() + wait
    )
