"""A unit of work's time: when it arrived, when it must be done by, and
whether whoever asked for it is still there (an HTTP request; a job can use
the same rule). ``current`` holds the one being worked on, so the pools bound
their waits by it wherever the code runs (a task, a request thread).

A unit ends early for one of three reasons: ``SHED`` (the managed queue
refused it, ``admission.Gate``), ``EXPIRED`` (its deadline passed) or ``LEFT``
(its client closed the connection). Ending it cancels its task where it waits
(``asyncio.Timeout``), so psycopg cancels a running query in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from dataclasses import dataclass, field
from typing import Any

SHED, EXPIRED, LEFT = "shed", "expired", "left"


@dataclass(eq=False)
class TimeBudget:
    """One unit of work's arrival and deadline (``time.monotonic()`` seconds)."""

    arrival: float
    deadline: float
    lost: asyncio.Future[None] | None = None  # done when its client has gone
    loop: asyncio.AbstractEventLoop | None = None  # the loop its task runs in
    queue_s: float | None = None  # arrival to permit, once admitted (admission.Gate)
    outcome: str | None = None  # why it ended early: SHED, EXPIRED, LEFT
    responding: bool = False  # its response has started: the deadline no longer applies
    interrupted: bool = False  # it ended early while a query of its was running
    conn: Any = None  # the connection it holds now (the pools set it)
    timeout: asyncio.Timeout | None = field(default=None, repr=False)  # cancels its task when ended
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)  # ends it at the deadline

    def end(self, outcome: str) -> None:
        """End it now (in the event loop): its task is cancelled where it waits."""
        if self.outcome is None:
            self.outcome = outcome
            self.interrupted = running_query(self.conn)
        timeout, loop = self.timeout, self.loop
        if timeout is not None and loop is not None and not timeout.expired():
            timeout.reschedule(loop.time())

    def on_lost(self, _: object = None) -> None:
        if not self.responding:
            self.end(LEFT)

    def expired(self) -> None:
        """Its deadline passed (the timeout fired): record it."""
        if self.outcome is None:
            self.outcome = EXPIRED
            self.interrupted = running_query(self.conn)

    def arm(self) -> None:
        """Start the deadline's timer (in its loop, once ``timeout`` is set)."""
        assert self.loop is not None
        self.timer = self.loop.call_at(self.loop.time() + self.remaining(), self._on_deadline)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_deadline(self) -> None:
        self.timer = None
        if not self.responding:
            self.end(EXPIRED)

    def started_response(self) -> None:
        self.responding = True
        self.disarm()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def set_deadline(self, deadline: float) -> None:
        """Move the deadline (from its task, or from a request thread)."""
        self.deadline = deadline
        loop = self.loop
        if loop is None or self.timer is None:
            return  # not armed: ended, responding, or not an HTTP request
        if _in_loop(loop):
            self._rearm()
        else:
            loop.call_soon_threadsafe(self._rearm)

    def _rearm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.arm()


def running_query(conn: Any) -> bool:
    """Is a query of ``conn`` (a psycopg connection, or None) running now?"""
    if conn is None:
        return False
    from psycopg import pq

    return bool(conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


current: contextvars.ContextVar[TimeBudget | None] = contextvars.ContextVar("supervise_budget", default=None)


def set_request_timeout(seconds: float) -> None:
    """Give the current HTTP request ``seconds`` from its arrival, instead of
    ``--request-timeout`` (a report that needs longer, an endpoint that must
    fail fast). Outside a request, or once its response has started, it does
    nothing. Raises ValueError for a number that is not positive and finite."""
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"set_request_timeout: expected a positive number of seconds, got {seconds!r}")
    budget = current.get()
    if budget is not None:
        budget.set_deadline(budget.arrival + float(seconds))


class Deadline:
    """A unit of work that must be done ``seconds`` from now: ``with
    worker.deadline(5):`` in a ``main`` loop (or ``async with`` in an async
    one). Inside it, a pool checkout waits at most what is left; at the
    deadline a query still running is cancelled in PostgreSQL (the code gets
    ``psycopg.errors.QueryCanceled``), and in an ``async with`` the task is
    cancelled where it waits and ``TimeoutError`` is raised, as
    ``asyncio.timeout`` does."""

    def __init__(self, seconds: float) -> None:
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"deadline: expected a positive number of seconds, got {seconds!r}")
        self.seconds = float(seconds)
        self._token: contextvars.Token[TimeBudget | None] | None = None
        self._timer: Any = None
        self._timeout: asyncio.Timeout | None = None

    def _begin(self) -> TimeBudget:
        now = time.monotonic()
        budget = TimeBudget(now, now + self.seconds)
        self._token = current.set(budget)
        return budget

    def _end(self) -> None:
        if self._token is not None:
            current.reset(self._token)
            self._token = None

    def __enter__(self) -> TimeBudget:
        import threading

        budget = self._begin()

        def expire() -> None:
            budget.expired()
            if budget.interrupted:
                budget.conn.cancel_safe(timeout=5.0)

        self._timer = threading.Timer(self.seconds, expire)
        self._timer.daemon = True
        self._timer.start()
        return budget

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._end()

    async def __aenter__(self) -> TimeBudget:
        budget = self._begin()
        budget.loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout(self.seconds)
        budget.timeout = await self._timeout.__aenter__()
        return budget

    async def __aexit__(self, *exc: Any) -> None:
        try:
            assert self._timeout is not None
            await self._timeout.__aexit__(*exc)
        finally:
            self._end()
