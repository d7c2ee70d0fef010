"""What the granian runner puts between granian and the app.

granian's Rust side owns the connections, so what our uvicorn runner does in
its protocol class is done here at the app boundary, once per request:

* count requests (``--max-requests``, the USR1 status line) and know which are
  in flight and since when (the WSGI heartbeat, the retire's wait);
* while the worker retires, answer every request with ``Connection: close``,
  so a keep-alive client learns it must reconnect *with* a response, never by
  a connection closed under a request it already sent;
* the access log of WSGI apps (the fields of ``access_log``), in our log
  pipeline instead of granian's own loggers;
* for WSGI apps, what of the request deadlines and the managed queue granian
  lets us apply (``budgeted``): granian queues WSGI requests in Rust, in
  arrival order, and hands Python a request only when a thread takes it, with
  no arrival time and no word when the client leaves. So a request is judged
  when it starts: past its deadline (counted from a trusted proxy's
  ``X-Request-Start``) it gets 504, and its checkouts wait at most what is
  left of its deadline. Its wait in granian's queue is unseen, so nothing is
  refused as overload; a query still running at the deadline is not
  cancelled, and a client that left is not noticed: for those, serve WSGI
  with ``--http uvicorn``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from supervisor.http.access_log import RequestIds
from supervisor.http.deadlines import request_start
from supervisor.logging import FastLines, fast_info
from supervisor.worker.time_budget import TimeBudget, current

if TYPE_CHECKING:
    from supervisor.worker.admission import Gate

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class Tally:
    """Requests started, and the start time of each one still in flight."""

    def __init__(self) -> None:
        self.closing = False  # set when the worker retires: every response says Connection: close
        self._next = itertools.count(1)
        self._started = 0
        self._in_flight: dict[int, float] = {}
        self.last_activity = time.monotonic()
        # dict writes are atomic under the GIL; the lock only makes begin/end
        # and the readers agree on one snapshot
        self._lock = threading.Lock()

    @property
    def started(self) -> int:
        return self._started

    def begin(self) -> int:
        now = time.monotonic()
        with self._lock:
            n = next(self._next)
            self._started = n
            self._in_flight[n] = now
            self.last_activity = now
        return n

    def end(self, n: int) -> None:
        with self._lock:
            self._in_flight.pop(n, None)
            self.last_activity = time.monotonic()

    def in_flight(self) -> int:
        return len(self._in_flight)

    def stalled_since(self, threads: int) -> float | None:
        """Since when every one of ``threads`` request threads has been busy
        (when the last of their requests started), or None while one is free."""
        with self._lock:
            if len(self._in_flight) < threads:
                return None
            return max(self._in_flight.values())


def wsgi(app: WSGIApp, tally: Tally, access_log: bool, request_id_header: str = "X-Request-ID") -> WSGIApp:
    """``app`` counted, closing politely while retiring, and logged if asked
    (the fields of ``access_log.AccessLog``, which granian's ASGI apps get)."""
    key = "HTTP_" + request_id_header.strip().upper().replace("-", "_")
    ids = RequestIds()
    lines = fast_info("request") if access_log else None

    def counted(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        n = tally.begin()
        started = time.perf_counter()
        status: list[str] = []
        echo = None
        if access_log and key not in environ:
            echo = environ[key] = ids.new()

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if tally.closing:
                headers = [*headers, ("Connection", "close")]
            if echo is not None:
                headers = [*headers, (request_id_header, echo)]
            status.append(code)
            return start_response(code, headers, exc_info)

        def done(size: int | None) -> None:
            tally.end(n)
            if lines is not None:
                _log_wsgi(lines, environ, status[-1] if status else "500", size, started, key)

        try:
            body = app(environ, start)
        except BaseException:
            done(None)
            raise
        if isinstance(body, list):  # granian's fast path takes a list as it is
            done(sum(len(chunk) for chunk in body) if access_log else None)
            return body
        return _Streamed(body, done, count=access_log)

    return counted


class _Streamed:
    """A streamed WSGI body: the request ends when granian closes it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[int | None], None], count: bool) -> None:
        self._body = body
        self._iter: Iterator[bytes] = iter(body)
        self._done: Callable[[int | None], None] | None = done
        self._size: int | None = 0 if count else None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._iter)
        if self._size is not None:
            self._size += len(chunk)
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done(self._size)


def _log_wsgi(
    lines: FastLines, environ: Environ, status: str, size: int | None, started: float, key: str
) -> None:
    line = lines.render(
        client=environ.get("REMOTE_ADDR"),
        method=environ.get("REQUEST_METHOD"),
        path=environ.get("PATH_INFO"),
        query=environ.get("QUERY_STRING", ""),
        status=int(status.split(" ", 1)[0]),
        bytes=size,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        request_id=environ.get(key),
    )
    lines.write(line)


ASGIApp = Callable[[dict[str, Any], Callable[..., Any], Callable[..., Any]], Any]
_CLOSE = (b"connection", b"close")


def asgi(app: ASGIApp, tally: Tally) -> ASGIApp:
    """``app`` counted and closing politely while retiring (the access log and
    proxy headers are inside it: ``stack.wrap``)."""

    async def counted(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        n = tally.begin()

        async def send_politely(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and tally.closing:
                message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        try:
            await app(scope, receive, send_politely)
        finally:
            tally.end(n)

    return counted


def budgeted(
    app: WSGIApp,
    timeout: float,
    gate: Gate,
    trusted: Callable[[str], bool],
    retry_after: int,
) -> WSGIApp:
    """``app`` with what granian lets us apply of the deadlines (see the module's docstring)."""
    lock = threading.Lock()  # the gate is the event loop's in the uvicorn engine; here, threads share it
    retry = str(retry_after)

    def refuse(
        start_response: StartResponse, status: str, text: bytes, extra: list[tuple[str, str]]
    ) -> list[bytes]:
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text))), *extra]
        start_response(status, headers)
        return [text]

    def call(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        now = time.monotonic()
        arrival = now
        stamp = environ.get("HTTP_X_REQUEST_START")
        if stamp is not None and trusted(environ.get("REMOTE_ADDR", "")):
            age = request_start(stamp.encode("latin-1"), time.time())
            if age is None:
                with lock:
                    gate.tally.bad_request_start()
            else:
                arrival = now - age
        # its local wait is granian's, unseen: the proxy's time counts toward the deadline only
        budget = TimeBudget(arrival, arrival + timeout, started=now, local=now)
        if arrival + timeout <= now:
            with lock:
                gate.tally.expired()
            return refuse(start_response, "504 Gateway Timeout", b"request timed out\n", [])
        with lock:
            admitted = gate.poll(budget)  # None: no permit free; granian's own threads bound the work
        if admitted is False:
            return refuse(
                start_response,
                "503 Service Unavailable",
                b"overloaded: retry later\n",
                [("Retry-After", retry)],
            )
        token = current.set(budget)
        try:
            return app(environ, start_response)
        finally:
            current.reset(token)
            if admitted:
                with lock:
                    gate.release()

    return call
