"""What the granian runner puts between granian and the app.

granian's Rust side owns the connections, so what our uvicorn runner does in
its protocol class is done here at the app boundary, once per request:

* count requests (``--max-requests``, the USR1 status line) and know which are
  in flight and since when (the WSGI heartbeat, the retire's wait);
* while the worker retires, answer every request with ``Connection: close``,
  so a keep-alive client learns it must reconnect *with* a response, never by
  a connection closed under a request it already sent;
* the access log, in our log pipeline instead of granian's own loggers.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from supervisor.logging import get_logger

log = get_logger()

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


def wsgi(app: WSGIApp, tally: Tally, access_log: bool) -> WSGIApp:
    """``app`` counted, closing politely while retiring, and logged if asked."""

    def counted(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        n = tally.begin()
        status: list[str] = []

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if tally.closing:
                headers = [*headers, ("Connection", "close")]
            status.append(code)
            return start_response(code, headers, exc_info)

        try:
            body = app(environ, start)
        except BaseException:
            tally.end(n)
            _log_wsgi(access_log, environ, "500")
            raise
        if isinstance(body, list):  # granian's fast path takes a list as it is
            tally.end(n)
            _log_wsgi(access_log, environ, status[-1] if status else "500")
            return body

        def done() -> None:
            tally.end(n)
            _log_wsgi(access_log, environ, status[-1] if status else "500")

        return _Streamed(body, done)

    return counted


class _Streamed:
    """A streamed WSGI body: the request ends when granian closes it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._iter: Iterator[bytes] = iter(body)
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._iter)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


def _log_wsgi(enabled: bool, environ: Environ, status: str) -> None:
    if enabled:
        log.info(
            "request",
            client=environ.get("REMOTE_ADDR"),
            method=environ.get("REQUEST_METHOD"),
            path=environ.get("PATH_INFO"),
            status=int(status.split(" ", 1)[0]),
        )


ASGIApp = Callable[[dict[str, Any], Callable[..., Any], Callable[..., Any]], Any]
_CLOSE = (b"connection", b"close")


def asgi(app: ASGIApp, tally: Tally, access_log: bool) -> ASGIApp:
    """``app`` counted, closing politely while retiring, and logged if asked."""

    async def counted(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        n = tally.begin()
        status = 500

        async def send_politely(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if tally.closing:
                    message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        try:
            await app(scope, receive, send_politely)
        finally:
            tally.end(n)
            if access_log:
                client = scope.get("client")
                log.info(
                    "request",
                    client=client[0] if client else None,
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status,
                )

    return counted
