"""A unit of work's time: when it arrived, when it must be done by, and
whether whoever asked for it is still there (an HTTP request; a job can use
the same rule). ``current`` holds the one being worked on, so the pools bound
their waits by it wherever the code runs (a task, a request thread).

A unit ends early for one of three reasons: ``SHED`` (the managed queue
refused it, ``admission.Gate``), ``EXPIRED`` (its deadline passed) or ``LEFT``
(its client closed the connection). Ending it cancels its task where it waits,
so psycopg cancels a running query in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

SHED, EXPIRED, LEFT = "shed", "expired", "left"


@dataclass(eq=False, slots=True)
class TimeBudget:
    """One unit of work's arrival and deadline (``time.monotonic()`` seconds)."""

    arrival: float  # the deadline counts from here (a trusted proxy's X-Request-Start, or ``local``)
    deadline: float  # before pauses (``due``)
    lost: asyncio.Future[None] | None = None  # done when its client has gone
    loop: asyncio.AbstractEventLoop | None = None  # the loop its task runs in
    started: float | None = None  # when its app started (None: at its arrival)
    local: float | None = None  # when it reached this worker (None: at ``arrival``)
    queue_s: float | None = None  # local arrival to permit, once admitted (admission.Gate)
    running: bool = False  # its work began: it holds a connection, or a request thread runs it
    outcome: str | None = None  # why it ended early: SHED, EXPIRED, LEFT
    responding: bool = False  # its response has started: the deadline no longer applies
    interrupted: bool = False  # it ended early while a query of its was running
    conn: Any = None  # the connection it holds now (the pools set it)
    task: asyncio.Task[Any] | None = field(default=None, repr=False)  # cancelled when it ends early
    cancelled: bool = False  # we cancelled its task (its owner uncancels it)
    finished: bool = False  # its app returned: nothing left to end
    paused: int = 0  # its app's reads of the client in progress: the deadline waits for them
    paused_at: float = 0.0
    paused_s: float = 0.0  # added to the deadline: time spent waiting on its client
    watch: DeadlineWatch | None = field(default=None, repr=False)

    def end(self, outcome: str) -> None:
        """End it now (in its event loop). From outside its task (the client
        gone, the deadline), the task is cancelled where it waits; from inside
        (a refusal in its checkout), the caller raises."""
        if self.finished or self.outcome is not None:
            return
        self.outcome = outcome
        self.interrupted = running_query(self.conn)
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task(self.loop):
            self.cancelled = True
            task.cancel()

    def on_lost(self, _: object = None) -> None:
        if not self.responding:
            self.end(LEFT)

    def due(self) -> float:
        """Its deadline, moved by the time it spent waiting on its client."""
        return self.deadline + self.paused_s

    def remaining(self) -> float:
        """Seconds left before its deadline; infinite once its response has
        started (a streaming response is not cut, so its checkouts wait as
        any other would)."""
        if self.responding:
            return math.inf
        return self.due() - (self.paused_at if self.paused else time.monotonic())

    def before_app(self) -> float:
        """How long it waited in this worker before its app started (in the
        kernel, the event loop): queue time, unlike what the app did before its
        checkout, or a proxy's clock, which may be off."""
        if self.started is None:
            return 0.0
        return max(0.0, self.started - (self.arrival if self.local is None else self.local))

    def pause(self) -> None:
        """Its app waits for its client (the request body): not the server's
        time. The deadline stops until :meth:`resume`; calls nest."""
        self.paused += 1
        if self.paused == 1:
            self.paused_at = time.monotonic()

    def resume(self) -> None:
        self.paused -= 1
        if self.paused == 0:
            self.paused_s += time.monotonic() - self.paused_at
            self._watched()

    def set_deadline(self, deadline: float) -> None:
        """Move the deadline (from its task, or from a request thread)."""
        self.deadline = deadline
        loop = self.loop
        if self.watch is None or loop is None or self.finished:
            return
        if _in_loop(loop):
            self._watched()
        else:
            loop.call_soon_threadsafe(self._watched)

    def _watched(self) -> None:
        """Its watch looks at it by its (new) deadline."""
        watch = self.watch
        if watch is not None and (due := self.due()) < watch.armed_for:
            watch.arm(due)


class DeadlineWatch:
    """The deadlines of one event loop's requests, with one timer for the
    soonest instead of one per request: adding a request is an append, and
    the timer moves only when a deadline sooner than the one it waits for
    comes in (deadlines mostly follow arrivals, so seldom). When it fires,
    every request is judged: ended, answered, waiting on its client (judged
    again when it resumes), expired, or the next soonest. Requests that
    ended are dropped in bulk once they are half the list, so it stays about
    as long as the requests in flight."""

    COMPACT_FLOOR = 64

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._budgets: list[TimeBudget] = []
        self._timer: asyncio.TimerHandle | None = None
        self.armed_for = math.inf
        self._compact_at = self.COMPACT_FLOOR

    def add(self, budget: TimeBudget) -> None:
        """Watch ``budget`` (in this loop)."""
        budget.watch = self
        budgets = self._budgets
        budgets.append(budget)
        due = budget.due()
        if due < self.armed_for:
            self.arm(due)
        if len(budgets) > self._compact_at:
            self._budgets = [b for b in budgets if _open(b)]
            self._compact_at = max(self.COMPACT_FLOOR, 2 * len(self._budgets))

    def __len__(self) -> int:
        return len(self._budgets)

    def arm(self, when: float) -> None:
        """Look again at ``when`` (sooner than now armed for)."""
        if self._timer is not None:
            self._timer.cancel()
        self.armed_for = when
        self._timer = self.loop.call_at(self.loop.time() + (when - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer, self.armed_for = None, math.inf
        now, soonest, kept = time.monotonic(), math.inf, []
        for budget in self._budgets:
            if not _open(budget):
                continue
            if budget.paused:
                kept.append(budget)  # resume() arms the timer for it again
                continue
            due = budget.due()
            if due <= now:
                budget.end(EXPIRED)
            else:
                kept.append(budget)
                soonest = min(soonest, due)
        self._budgets = kept
        self._compact_at = max(self.COMPACT_FLOOR, 2 * len(kept))
        if soonest < math.inf:
            self.arm(soonest)


def _open(budget: TimeBudget) -> bool:
    """Its deadline may still end it: not ended, finished or answering."""
    return budget.outcome is None and not budget.finished and not budget.responding


def running_query(conn: Any) -> bool:
    """Is a query of ``conn`` (a psycopg connection, or None) running now?"""
    if conn is None:
        return False
    from psycopg import pq

    return bool(conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE)


# Cancelling a query from outside the thread that runs it races that thread:
# it may finish the query and give the connection back, and the pool may lend
# it to another request, whose query the cancel would then hit. So a cancel
# is claimed under this lock, and a connection going back to a pool
# (``returning``) waits for a claimed cancel to be delivered first; PostgreSQL
# ignores a cancel that reaches an idle session.
_cancel_lock = threading.Lock()
_cancelling: dict[int, threading.Event] = {}  # id(conn) -> set once its cancel was delivered


def cancel_running_query(budget: TimeBudget) -> bool:
    """From outside the thread that holds ``budget``'s connection: cancel the
    query it runs now, if any (in a short-lived thread: psycopg's cancel blocks
    for a round trip). True when a cancel was sent."""
    with _cancel_lock:
        conn = budget.conn
        if not running_query(conn):
            return False
        if id(conn) in _cancelling:
            return True
        delivered = _cancelling[id(conn)] = threading.Event()

    def cancel() -> None:
        try:
            conn.cancel_safe(timeout=5.0)
        except Exception as exc:  # the connection is gone, or the server does not answer
            from supervisor.logging import get_logger

            get_logger("supervisor.worker").warning(
                "could not cancel the query of a unit of work that ended", error=str(exc)
            )
        finally:
            with _cancel_lock:
                _cancelling.pop(id(conn), None)
            delivered.set()

    threading.Thread(target=cancel, name="supervise-cancel", daemon=True).start()
    return True


def returning(conn: Any) -> None:
    """``conn`` goes back to its pool (from the thread that held it): it no
    longer belongs to the current unit, and waits for a cancel of its query
    claimed meanwhile to be delivered (``cancel_running_query``)."""
    budget = current.get()
    with _cancel_lock:
        if budget is not None and budget.conn is conn:
            budget.conn = None
        delivered = _cancelling.get(id(conn))
    if delivered is not None:
        delivered.wait(6.0)  # cancel_safe gives up after 5 s


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
        self._timer: threading.Timer | None = None
        self._timeout: asyncio.Timeout | None = None

    def _begin(self) -> TimeBudget:
        now = time.monotonic()
        budget = TimeBudget(now, now + self.seconds, started=now)
        self._token = current.set(budget)
        return budget

    def _end(self) -> None:
        if self._token is not None:
            current.reset(self._token)
            self._token = None

    def __enter__(self) -> TimeBudget:
        budget = self._begin()

        def expire() -> None:  # the timer's thread
            if budget.outcome is None and not budget.finished:
                budget.outcome = EXPIRED
                budget.interrupted = cancel_running_query(budget)

        self._timer = threading.Timer(self.seconds, expire)
        self._timer.daemon = True
        self._timer.start()
        return budget

    def __exit__(self, *exc: object) -> None:
        assert self._timer is not None
        self._timer.cancel()
        budget = current.get()
        if budget is not None:
            budget.finished = True
        self._end()

    async def __aenter__(self) -> TimeBudget:
        budget = self._begin()
        budget.loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout(self.seconds)
        await self._timeout.__aenter__()
        return budget

    async def __aexit__(self, *exc: Any) -> None:
        budget = current.get()
        try:
            assert self._timeout is not None
            await self._timeout.__aexit__(*exc)
        finally:
            if budget is not None:
                budget.finished = True
                if self._timeout is not None and self._timeout.expired() and budget.outcome is None:
                    budget.outcome = EXPIRED
            self._end()
