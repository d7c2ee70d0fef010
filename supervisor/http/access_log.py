"""The access log: one structured event per HTTP request, from an ASGI
middleware around the app (a WSGI app is behind the bridge, itself an ASGI
app, so both are logged here alike).

Fields: ``client``, ``method``, ``path``, ``query``, ``status``, ``bytes``
(response body), ``duration_ms``, ``queue_ms`` (from the request's arrival to
its database connection or request thread; absent if it needed neither),
``request_id`` (and, from the log pipeline, ``worker_id`` and ``pid``). A
request that ended early is logged with what its client got: 503 (refused as
overload), 504 (past its deadline) or 499 (the client left first). The request id is the value of
``--request-id-header`` when the client (or a proxy) sent one; otherwise one
is generated, added to the request's headers (so the app and its own logs see
it) and echoed in the response. Generated ids are a random per-process prefix
and a counter: unique across workers and restarts without a uuid per request.

It sits inside the proxy-headers middleware, so ``client`` is the forwarded
address when the proxy is trusted, and inside the deadline layer, whose
request budget it reads.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from supervisor.http.wsgi_request import BUDGET
from supervisor.logging import fast_info
from supervisor.worker.time_budget import EXPIRED, LEFT, SHED

# what the client of a request that ended early got (499: nginx's "client closed request")
_ENDED_EARLY = {SHED: 503, EXPIRED: 504, LEFT: 499}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIds:
    """Request ids: a random per-process prefix and a counter (no uuid per request)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6) + "-"
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._count):x}"


class AccessLog:
    """``app`` with one ``request`` event logged per HTTP request."""

    def __init__(self, app: ASGIApp, header: str) -> None:
        self.app = app
        self.header = header.strip().lower().encode("latin-1")
        self._ids = RequestIds()
        self._lines = fast_info("request")  # None when info lines are filtered out
        self._pending: list[str] = []

    def new_id(self) -> bytes:
        return self._ids.new().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        header = self.header
        request_id = None
        for name, value in scope["headers"]:
            if name == header:
                request_id = value
                break
        echo = request_id is None
        if request_id is None:
            request_id = self.new_id()
            headers = scope["headers"]
            if isinstance(headers, list):
                headers.append((header, request_id))
            else:
                scope["headers"] = [*headers, (header, request_id)]
        status = 0
        size = 0

        async def logged_send(message: Message) -> None:
            nonlocal status, size
            kind = message["type"]
            if kind == "http.response.body":
                size += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
                if echo:  # a copy: an app may send the same message dict every time
                    message = {**message, "headers": [*message.get("headers", ()), (header, request_id)]}
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        except BaseException:
            status = status or 500  # what the server answers for an app that raised
            raise
        finally:
            if self._lines is not None:
                self._log(scope, status, size, started, request_id)

    def _log(self, scope: Scope, status: int, size: int, started: float, request_id: bytes) -> None:
        assert self._lines is not None
        client = scope.get("client")
        query = scope["query_string"]
        budget = scope.get("extensions", {}).get(BUDGET)
        queue_ms = None
        if budget is not None:
            if budget.outcome is not None and not budget.responding:
                status = _ENDED_EARLY[budget.outcome]
            if budget.queue_s is not None:
                queue_ms = round(budget.queue_s * 1000, 3)
        line = self._lines.render(
            client=client[0] if client else None,
            method=scope["method"],
            path=scope["path"],
            query=query.decode("latin-1") if query else "",
            status=status or None,
            bytes=size,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            queue_ms=queue_ms,
            request_id=request_id.decode("latin-1"),
        )
        # One write per turn of the event loop, not per request: under load one
        # system call carries many lines; when idle, a line is out at once.
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(line)

    def _flush(self) -> None:
        lines, self._pending = self._pending, []
        if self._lines is not None and lines:
            self._lines.write("".join(lines))
