"""HTTP/1.1 details uvicorn's httptools protocol leaves out, added in a subclass.

The uvicorn engine serves through ``uvicorn.protocols.http.httptools_impl``;
this module wraps it (the polite-retirement wrapper in ``uvicorn_engine`` goes
on top):

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
* a response's head goes out with the first bytes of its body, in one write
  (one ``send()``, one TCP segment for a small response), not on its own;
* in ``scope["extensions"]``: when the request arrived (for a new
  connection, counting the time it waited in the kernel's accept queue) and
  the connection's "lost" future, which the deadline layer (``deadlines``)
  turns into "stop working for a client that left"; for the WSGI bridge also
  "100 Continue" on demand instead of on the first ``receive()``, and the
  socket lent for ``sendfile``.

Upstream, these are uvicorn issues (HTTP/1.0 chunked and keep-alive, 304
with a length, no head limits in the httptools protocol); this layer can go
when uvicorn fixes them.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from typing import Any

from supervisor.http.wsgi_request import ARRIVAL, CONTINUE, LOST, ZEROCOPY

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# struct tcp_info (linux/tcp.h): u32 tcpi_last_ack_recv, milliseconds, at byte 56
_LAST_ACK_RECV = 56
_TCP_INFO_LEN = _LAST_ACK_RECV + 4
# A first byte this long after the accept was sent then, not waiting in the kernel
_FIRST_BYTE_LATE = 0.05
_JOIN_MAX = 64 * 1024  # a body up to this is copied behind its head: one write
_REASONS = {408: "Request Timeout", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


def _kernel_wait(transport: Any) -> float:
    """Seconds a new connection spent in the kernel before we accepted it: the
    age of the last packet it received (TCP_INFO's ``tcpi_last_ack_recv``),
    0.0 when the socket does not say (not TCP, not Linux)."""
    sock = transport.get_extra_info("socket")
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (AttributeError, OSError):
        return 0.0
    if len(info) < _TCP_INFO_LEN:
        return 0.0
    return int.from_bytes(info[_LAST_ACK_RECV : _LAST_ACK_RECV + 4], sys.byteorder) / 1000.0


def _longest_field(headers: list[tuple[bytes, bytes]]) -> int:
    return max((len(name) + len(value) for name, value in headers), default=0)


class _HeldHead:
    """One response's view of its connection's transport: the head is held
    until the first piece of the body is written, and goes out with it.

    uvicorn writes the head, then the body: two ``send()`` calls and two TCP
    segments for every small response, where one does. A head whose body does
    not follow at once (a stream that starts later, a HEAD request) goes out at
    the end of this turn of the event loop, so nothing waits on the app.
    """

    __slots__ = ("_expect_head", "_head", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._expect_head = True  # the next write is the head
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._expect_head:
            self._expect_head = False
            self._head = data
            self._loop.call_soon(self.flush)
            return
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= _JOIN_MAX:
                data = head + data
            else:
                self.transport.write(head)  # not worth copying a large body for
        self.transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self.transport.is_closing():
                self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        self.flush()  # anything else may depend on the bytes being out
        return getattr(self.transport, name)


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
        from uvicorn.protocols.http import httptools_impl
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        return base
    if not issubclass(base, HttpToolsProtocol):
        return base
    root = root_path.rstrip("/")
    root_bytes = root.encode("latin-1")

    # uvicorn's own class, also when this runs again in one process (tests)
    RequestResponseCycle = getattr(httptools_impl, "_uvicorn_cycle", httptools_impl.RequestResponseCycle)
    httptools_impl._uvicorn_cycle = RequestResponseCycle  # type: ignore[attr-defined]
    base_send = RequestResponseCycle.send
    base_data_received = base.data_received
    base_headers_complete = base.on_headers_complete

    class Cycle(RequestResponseCycle):  # type: ignore[valid-type,misc]
        loop: asyncio.AbstractEventLoop  # the protocol's, given once the head is in
        close_delimited = False
        keep_alive_10 = False  # an HTTP/1.0 client asked for keep-alive

        def send(self, message: Any) -> Any:
            # not a coroutine itself: the common case returns uvicorn's, one frame less per message
            if message["type"] == "http.response.start" and not self.response_started:
                self.transport: Any = _HeldHead(self.transport, self.loop)  # its writes, from its head on
                if message["status"] in (204, 304) or self.scope["http_version"] == "1.0":
                    return self._send_start(message)
            elif (
                self.close_delimited
                and message["type"] == "http.response.body"
                and not self.response_complete
            ):
                self.expected_content_length = len(message.get("body", b""))
            return base_send(self, message)

        async def _send_start(self, message: Any) -> None:
            status = message["status"]
            if self.scope["http_version"] == "1.0":
                message = self._for_http10(message)
            await base_send(self, message)
            if status in (204, 304):
                self.expected_content_length = 0  # a length here describes no body

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

    class Hardened(base):  # type: ignore[valid-type,misc]
        # Slots, not instance attributes: uvicorn's protocol already has about as many
        # attributes as CPython keeps in a shared-key dict; past that every attribute
        # access of every request takes a slower path (about 4 us a request, measured)
        __slots__ = (
            "_accepted",
            "_arrived",
            "_chunk",
            "_head_bytes",
            "_head_scope",
            "_head_timer",
            "_lost",
            "_refusal",
        )

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            # its first request arrived when the kernel saw it, before the accept
            self._accepted = time.monotonic()
            self._arrived = self._accepted - _kernel_wait(transport)
            self._lost: asyncio.Future[None] = self.loop.create_future()
            self._head_scope: Any = None  # the request whose head is arriving in parts
            self._head_bytes = 0  # its bytes so far
            self._chunk = 0  # the size of the last piece received
            self._refusal: tuple[int, str] | None = None
            self._head_timer: asyncio.TimerHandle | None = None
            if limits.header_timeout:
                self._head_timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            if self._head_timer is not None:
                self._head_timer.cancel()
            if not self._lost.done():
                self._lost.set_result(None)

        def _in_head(self) -> bool:
            # uvicorn starts a scope at a request's first byte, and its cycle once the head is whole
            scope = self.scope
            return scope is not None and (self.cycle is None or self.cycle.scope is not scope)

        def data_received(self, data: bytes) -> None:
            self._chunk = len(data)
            if self.cycle is not None or self.scope is not None:
                # a later request (keep-alive), or the rest of a head: it arrives now at the earliest
                self._arrived = time.monotonic()
            elif (now := time.monotonic()) - self._accepted > _FIRST_BYTE_LATE:
                self._arrived = now  # a connection opened ahead of its request (a browser's spare)
            base_data_received(self, data)
            # the usual request comes whole in one piece: nothing more to do
            if not self._in_head() or self.transport.is_closing():
                return
            if self._head_scope is self.scope:
                self._head_bytes += self._chunk
            else:
                self._head_scope, self._head_bytes = self.scope, self._chunk
            if limits.head and self._head_bytes > limits.head:
                self._refuse(431, "Request header fields too large")
            elif self._head_timer is None and limits.header_timeout:
                # a head that comes in parts has a deadline
                self._head_timer = self.loop.call_later(limits.header_timeout, self._head_timed_out)

        def on_headers_complete(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            # the limits are checked on the whole head, which data_received kept within
            # their sum; per-field callbacks would cost every request a call per header
            if limits.line and len(self.url) > limits.line:
                self._refusal = (414, "Request line too long")
                raise _Refused
            if limits.fields and len(self.headers) > limits.fields:
                self._refusal = (431, "Too many request header fields")
                raise _Refused
            # no smaller than this head (the pieces it came in may hold more): when within
            # one field's limit, no field can be over it
            bound = self._chunk + (self._head_bytes if self._head_scope is self.scope else 0)
            if (
                limits.field_size
                and bound > limits.field_size
                and _longest_field(self.headers) > limits.field_size - 2  # without ": "
            ):
                self._refusal = (431, "Request header field too large")
                raise _Refused
            base_headers_complete(self)
            cycle = self.cycle
            if cycle is None or cycle.scope is not self.scope:
                return  # an upgrade: no HTTP cycle
            # (asyncio.get_running_loop() would cost a getpid() system call on Python 3.11)
            cycle.loop = self.loop
            scope = self.scope
            if root:
                scope["root_path"] = root
                raw = scope["raw_path"]
                if raw != root_bytes and not raw.startswith(root_bytes + b"/"):
                    # the proxy stripped the prefix: ASGI's path includes it
                    scope["path"] = root + scope["path"]
                    scope["raw_path"] = root_bytes + raw
            if scope["http_version"] == "1.0" and self.parser.should_keep_alive():
                cycle.keep_alive = cycle.keep_alive_10 = True
            extensions: dict[str, Any] = {LOST: self._lost, ARRIVAL: self._arrived}
            if wsgi:
                extensions[ZEROCOPY] = self
                if cycle.waiting_for_100_continue:
                    cycle.waiting_for_100_continue = False  # the bridge asks when the app reads
                    extensions[CONTINUE] = cycle.send_continue
            scope["extensions"] = extensions

        def send_400_response(self, msg: str) -> None:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                super().send_400_response(msg)

        # -- lent to the WSGI bridge (it is the scope's ZEROCOPY extension: the cycle itself
        # there would make every request a reference cycle for the garbage collector)

        async def zerocopy_begin(self, scope: Any, message: Any, count: int) -> int | None:
            """Send the head; then the socket's fd if ``count`` body bytes may be
            written to it directly (nothing buffered, no TLS), else None."""
            cycle = self.cycle
            if cycle is None or cycle.scope is not scope:
                return None  # pipelined behind another request: not worth the bookkeeping
            await cycle.send(message)
            if isinstance(cycle.transport, _HeldHead):
                cycle.transport.flush()  # the file's bytes go straight to the socket: the head first
            transport = self.transport
            if (
                cycle.disconnected
                or transport.is_closing()
                or cycle.chunked_encoding
                or cycle.close_delimited
                or cycle.expected_content_length < count
                or transport.get_write_buffer_size()
                or transport.get_extra_info("sslcontext") is not None
            ):
                return None
            sock = transport.get_extra_info("socket")
            if sock is None:
                return None
            cycle.expected_content_length -= count  # those bytes bypass send()
            return int(sock.fileno())

        def zerocopy_abort(self, scope: Any) -> None:
            if self.cycle is not None and self.cycle.scope is scope:
                self.cycle.disconnected = True
            self.transport.close()

        def _refuse(self, status: int, text: str) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            body = text.encode("ascii")
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            if not self.transport.is_closing():
                self.transport.write(head.encode("ascii") + body)
                self.transport.close()

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self._in_head():
                self._refuse(408, "Request head not received in time")
            elif self.cycle is None:
                self.transport.close()  # said nothing at all: nothing to answer

    Hardened.__name__ = Hardened.__qualname__ = f"Hardened{base.__name__}"
    # uvicorn builds each request's cycle by this module-level name: ours then (setting
    # __class__ on each one instead costs every attribute access its fast path)
    httptools_impl.RequestResponseCycle = Cycle  # type: ignore[misc]
    return Hardened
