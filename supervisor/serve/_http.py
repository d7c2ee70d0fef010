"""HTTP/1.1 details uvicorn's httptools protocol leaves out, added in a subclass.

The runners serve through ``uvicorn.protocols.http.httptools_impl``; this
module wraps it (the polite-retirement wrapper in ``asgi`` goes on top):

* limits on the request head, with gunicorn's defaults and statuses: a
  request line over ``--limit-request-line`` gets 414, more than
  ``--limit-request-fields`` header fields or one longer than
  ``--limit-request-field-size`` gets 431, and the head as a whole is capped
  by the three together, so a 16 MB header is refused before it is stored;
* ``--header-timeout``: a connection that has not sent a whole request head
  that long after it opened (or after its next request began) gets 408 and is
  closed, so a slow client (slowloris) holds no file descriptor for ever;
* ``--root-path``: ASGI's ``root_path``, and a ``path`` that starts with it
  (a proxy that strips the prefix is also served: the prefix is put back, as
  uvicorn does);
* HTTP/1.0: a response of unknown length ends by closing the connection
  (chunked coding does not exist in 1.0), and ``Connection: keep-alive`` from
  the client is honoured;
* a 304 (or 204) with a ``Content-Length`` is sent as it is, not failed as
  "shorter than Content-Length";
* for the WSGI bridge (``scope["extensions"]``): the connection's "lost"
  future, "100 Continue" on demand instead of on the first ``receive()``, and
  the socket lent for ``sendfile``.

Upstream, these are uvicorn issues (HTTP/1.0 chunked and keep-alive, 304
with a length, no head limits in the httptools protocol); this layer can go
when uvicorn fixes them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from supervisor.serve._wsgi_bridge import CONTINUE, LOST, ZEROCOPY

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {408: "Request Timeout", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


class _Refused(Exception):
    """Raised from a parser callback: the head broke a limit."""


class Limits:
    """The request-head settings (0: no limit)."""

    def __init__(self, line: int, fields: int, field_size: int, header_timeout: float) -> None:
        self.line = line
        self.fields = fields
        self.field_size = field_size
        self.header_timeout = header_timeout
        # the whole head: every part at its limit, plus line ends
        self.head = (line + 2 + fields * (field_size + 2) + 2) if line and fields and field_size else 0


def protocol_class(base: type[asyncio.Protocol], limits: Limits, root_path: str, wsgi: bool) -> type[Any]:
    """``base`` with the additions above; a protocol other than httptools'
    (h11, chosen only when httptools is missing) is returned as it is."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        return base
    if not issubclass(base, HttpToolsProtocol):
        return base
    root = root_path.rstrip("/")
    root_bytes = root.encode("latin-1")

    class Cycle(RequestResponseCycle):
        close_delimited = False
        keep_alive_10 = False  # an HTTP/1.0 client asked for keep-alive
        loop: asyncio.AbstractEventLoop

        async def send(self, message: Any) -> None:
            kind = message["type"]
            if kind == "http.response.start" and not self.response_started:
                status = message["status"]
                if self.scope["http_version"] == "1.0":
                    message = self._for_http10(message)
                await super().send(message)
                if status in (204, 304):
                    self.expected_content_length = 0  # a length here describes no body
                return
            if self.close_delimited and kind == "http.response.body" and not self.response_complete:
                self.expected_content_length = len(message.get("body", b""))
            await super().send(message)

        def _for_http10(self, message: Any) -> Any:
            headers = list(message.get("headers", ()))
            status = message["status"]
            sized = any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)
            bodyless = self.scope["method"] == "HEAD" or status in (204, 304) or status < 200
            if not sized and not bodyless:
                # 1.0 has no chunked coding: the body ends where the connection does
                self.close_delimited = True
                self.keep_alive = False
                self.chunked_encoding = False
            elif self.keep_alive_10 and self.keep_alive:
                headers.append((b"connection", b"keep-alive"))  # 1.0 closes unless told otherwise
                return {**message, "headers": headers}
            return message

        def send_continue(self) -> None:
            if not self.response_started and not self.disconnected and not self.transport.is_closing():
                self.transport.write(_CONTINUE)

        async def zerocopy_begin(self, message: Any, count: int) -> int | None:
            """Send the head; then the socket's fd if ``count`` body bytes may be
            written to it directly (nothing buffered, no TLS), else None."""
            await self.send(message)
            transport = self.transport
            if (
                self.disconnected
                or transport.is_closing()
                or self.chunked_encoding
                or self.close_delimited
                or self.expected_content_length < count
                or transport.get_write_buffer_size()
                or transport.get_extra_info("sslcontext") is not None
            ):
                return None
            sock = transport.get_extra_info("socket")
            if sock is None:
                return None
            self.expected_content_length -= count  # those bytes bypass send()
            return int(sock.fileno())

        def zerocopy_abort(self) -> None:
            self.disconnected = True
            self.transport.close()

    class Hardened(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._lost: asyncio.Future[None] = self.loop.create_future()
            self._head_done = False
            self._head_started = False  # a byte of the next request came
            self._head_bytes = 0
            self._field_count = 0
            self._refusal: tuple[int, str] | None = None
            self._head_timer: asyncio.TimerHandle | None = None
            self._start_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            self._stop_head_timer()
            if not self._lost.done():
                self._lost.set_result(None)

        def data_received(self, data: bytes) -> None:
            if not self._head_done:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._head_done or self.transport.is_closing():
                return
            if limits.head and self._head_bytes > limits.head:
                self._refuse(431, "Request header fields too large")
            elif self._head_timer is None:
                self._start_head_timer()  # a head that came in parts: it has a deadline

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_done = False
            self._head_started = True
            self._head_bytes = 0
            self._field_count = 0
            if root:
                self.scope["root_path"] = root

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            if limits.line and len(self.url) > limits.line:
                self._refusal = (414, "Request line too long")
                raise _Refused

        def on_header(self, name: bytes, value: bytes) -> None:
            self._field_count += 1
            if limits.fields and self._field_count > limits.fields:
                self._refusal = (431, "Too many request header fields")
                raise _Refused
            if limits.field_size and len(name) + len(value) + 2 > limits.field_size:
                self._refusal = (431, "Request header field too large")
                raise _Refused
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head_done = True
            self._head_started = False
            self._stop_head_timer()
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is None or cycle.scope is not self.scope:
                return  # an upgrade: no HTTP cycle
            cycle.__class__ = Cycle
            scope = self.scope
            if root:
                raw = scope["raw_path"]
                if raw != root_bytes and not raw.startswith(root_bytes + b"/"):
                    # the proxy stripped the prefix: ASGI's path includes it
                    scope["path"] = root + scope["path"]
                    scope["raw_path"] = root_bytes + raw
            if scope["http_version"] == "1.0" and self.parser.should_keep_alive():
                cycle.keep_alive = cycle.keep_alive_10 = True
            if wsgi:
                cycle.loop = self.loop
                extensions = scope.setdefault("extensions", {})
                extensions[LOST] = self._lost
                extensions[ZEROCOPY] = cycle
                if cycle.waiting_for_100_continue:
                    cycle.waiting_for_100_continue = False  # the bridge asks when the app reads
                    extensions[CONTINUE] = cycle.send_continue

        def send_400_response(self, msg: str) -> None:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                super().send_400_response(msg)

        def _refuse(self, status: int, text: str) -> None:
            self._stop_head_timer()
            body = text.encode("ascii")
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            if not self.transport.is_closing():
                self.transport.write(head.encode("ascii") + body)
                self.transport.close()

        def _start_head_timer(self) -> None:
            if limits.header_timeout:
                self._head_timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._head_done or self.transport.is_closing():
                return
            if self._head_started:
                self._refuse(408, "Request head not received in time")
            else:
                self.transport.close()  # said nothing at all: nothing to answer

    Hardened.__name__ = Hardened.__qualname__ = f"Hardened{base.__name__}"
    return Hardened
