"""The one place that ends an HTTP request early (``Deadlines``, the
outermost ASGI layer of every engine's stack), and where a request's arrival
comes from.

A request ends early for one of three reasons (``worker/time_budget.py``),
each answered here:

* **shed**: the managed queue (``worker/admission.py``) refused it: ``503``
  with ``Retry-After``, before or instead of the app's own answer;
* **expired**: ``--request-timeout`` (or the app's ``set_request_timeout``)
  passed before the response started: ``504``, at once;
* **left**: the client closed its connection: nothing is sent.

Either way the request's task is cancelled where it waits, so a query it
runs is cancelled in PostgreSQL by psycopg and its connection goes back to
the pool clean; a request that has not started its app is never run. Once
the response has started, the deadline no longer applies (a stream is not cut).

Arrival is the moment the request reached this worker (the protocol stamps
it, counting the time its connection spent in the kernel's accept queue). The
deadline counts from there, or from a trusted proxy's ``X-Request-Start``
(``--forwarded-allow-ips``) when that is earlier; the managed queue judges
only the local wait, as a proxy's clock may be off by more than a target.
While the app waits for its client (``receive``: the request body) the
deadline stops, so a slow upload is not cut as a slow server would be.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any

from supervisor.http.wsgi_request import ARRIVAL, BUDGET, LOST
from supervisor.worker.admission import Tally
from supervisor.worker.time_budget import EXPIRED, LEFT, SHED, DeadlineWatch, TimeBudget, current

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Nothing:
    """An awaitable that is already done (a dropped message)."""

    def __await__(self) -> Generator[None, None, None]:
        return
        yield


_NOTHING = _Nothing()

# a proxy's clock may run ahead of ours; a start further in the past than this is garbage
MAX_PROXY_QUEUE = 3600.0


def request_start(value: bytes, now_wall: float) -> float | None:
    """Seconds since a proxy's ``X-Request-Start`` (``t=`` prefix optional;
    seconds, ms, µs or ns since the epoch, told apart by magnitude), or None
    when it is not one."""
    text = value.strip()
    if text[:2] in (b"t=", b"T="):
        text = text[2:]
    try:
        stamp = float(text)
    except ValueError:
        return None
    if not math.isfinite(stamp) or stamp <= 0:
        return None
    for scale in (1.0, 1e3, 1e6, 1e9):  # s (nginx ${msec}), ms (Heroku), µs (Apache %t), ns
        if stamp / scale < 1e11:  # seconds since the epoch stay below 1e11 until year 5138
            age = now_wall - stamp / scale
            return max(age, 0.0) if age <= MAX_PROXY_QUEUE else None
    return None


class Deadlines:
    """The outermost ASGI layer: gives each HTTP request its budget and
    answers for it when it ends early (see the module's docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        timeout: float,
        tally: Tally,
        trusted: Callable[[str], bool] | None = None,
        retry_after: int = 1,
    ) -> None:
        self.app = app
        self.timeout = timeout
        self.tally = tally
        self.trusted = trusted  # is this peer a proxy whose X-Request-Start counts?
        self.retry_after = str(retry_after).encode()
        self._watch: DeadlineWatch | None = None  # the deadlines of this worker's loop

    def arrival(self, scope: Scope, local: float, now: float) -> float:
        """When the deadline starts: ``local`` (its arrival in this worker), or
        earlier by what a trusted proxy's ``X-Request-Start`` says it queued there."""
        assert self.trusted is not None
        for name, value in scope["headers"]:
            if name == b"x-request-start":
                client = scope.get("client")
                if client is None or not self.trusted(client[0]):
                    break  # an untrusted client's claim: ignored
                age = request_start(value, time.time())
                if age is None:
                    self.tally.bad_request_start()
                else:
                    return min(local, now - age)
                break
        return local

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ext = scope.get("extensions")
        if ext is None:
            ext = scope["extensions"] = {}
        lost: asyncio.Future[None] | None = ext.get(LOST)
        if lost is not None and lost.done():
            self.tally.left(running=False)  # gone before its app started: nothing to run
            return
        # current_task(loop) skips get_running_loop(), a getpid() on Python 3.11
        watch = self._watch
        task = asyncio.current_task(watch.loop) if watch is not None else None
        if watch is None or task is None:  # the first request, or a new loop (tests)
            task = asyncio.current_task()
            assert task is not None
            watch = self._watch = DeadlineWatch(task.get_loop())
        now = time.monotonic()
        local: float = ext.get(ARRIVAL, now)
        arrival = self.arrival(scope, local, now) if self.trusted is not None else local
        budget = TimeBudget(arrival, arrival + self.timeout, lost, watch.loop, now, local, task=task)
        ext[BUDGET] = budget
        if budget.deadline <= now:  # past its deadline before it reached us (a proxy's queue)
            budget.outcome = EXPIRED
            await self._ended(budget, send)
            return
        watch.add(budget)
        if lost is not None:
            lost.add_done_callback(budget.on_lost)
        token = current.set(budget)

        body_done = False

        async def paced() -> Message:
            # Waiting for the client's body is the client's time, not the server's. Once the
            # body is in, a receive() waits for the disconnect (Django 5 and Quart keep one
            # pending beside the view): that is the server's time, and it must not pause.
            nonlocal body_done
            if body_done:
                return await receive()
            budget.pause()
            try:
                message = await receive()
            finally:
                budget.resume()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        def guarded(message: Message) -> Awaitable[None]:
            # a plain function handing back the server's own awaitable: no coroutine of ours per send
            if budget.outcome is not None:
                return _NOTHING  # ended early: the answer is ours (an app's late 500 is dropped)
            if message["type"] == "http.response.start":
                budget.responding = True
            return send(message)

        try:
            try:
                await self.app(scope, paced, guarded)
            finally:
                budget.finished = True
                current.reset(token)
                if lost is not None:
                    lost.remove_done_callback(budget.on_lost)
        except asyncio.CancelledError:
            # ours (the budget ended it) unless someone else cancelled it too
            if not budget.cancelled or task.uncancel() > 0:
                raise
            await self._ended(budget, send)
        except Exception:
            # the app's own error (its server answers), or one raised through it after an early end
            if budget.cancelled:
                task.uncancel()
            if budget.outcome is None:
                raise
            await self._ended(budget, send)
        else:
            if budget.cancelled:
                task.uncancel()  # the app swallowed the cancellation and returned
            if budget.outcome is not None:
                await self._ended(budget, send)

    async def _ended(self, budget: TimeBudget, send: Send) -> None:
        outcome = budget.outcome
        if budget.interrupted:
            self.tally.cancelled()  # psycopg cancelled its query in PostgreSQL
        if outcome == LEFT:
            self.tally.left(running=budget.running)
            return
        if outcome == EXPIRED:
            self.tally.expired()
        if budget.responding:
            return
        status, text = (
            (503, b"overloaded: retry later\n") if outcome == SHED else (504, b"request timed out\n")
        )
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))]
        if outcome == SHED:
            headers.append((b"retry-after", self.retry_after))
        headers.append((b"connection", b"close"))  # a client of an overloaded worker may find another
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text})
