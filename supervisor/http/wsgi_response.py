"""What a WSGI app answers: ``start_response`` and its checks, the
Content-Length clamp, ``wsgi.file_wrapper``, and how a response goes out."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from supervisor.http.wsgi_request import ClientDisconnected, ExcInfo, Receive, Scope, Send
from supervisor.logging import get_logger

log = get_logger("supervisor.wsgi")
_warned_long = False  # the "longer than its Content-Length" warning, once per worker

_ERROR_BODY = b"Internal Server Error"
_NO_BODY = frozenset({100, 101, 102, 103, 204, 304})  # statuses that never carry a body
_STATUS = re.compile(r"[1-5][0-9][0-9] [^\r\n\0]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# PEP 3333: these describe the connection, which is the server's to manage
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer"}
    | {"transfer-encoding", "upgrade"}
)


def _no_start_response() -> ExcInfo:
    error = RuntimeError("the WSGI app returned without calling start_response")
    return type(error), error, None


def _close(result: object) -> None:
    """PEP 3333: ``close()`` always runs, once the response is done; an error
    in it is logged, the response already stands."""
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("the WSGI app's close() raised")


class _Response:
    """The state of one response, shared by ``start_response``, ``write()`` and
    the code that sends it."""

    def __init__(self, head: bool = False) -> None:
        self.head = head
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started_status = False  # start_response was called
        self.headers_sent = False  # http.response.start has gone out
        self.on_write: Callable[[bytes], None] | None = None
        self.disconnected = False
        self.body_done = False  # every piece of the request body has been received
        self.awaiting_continue = False  # the client holds its body until "100 Continue"
        self.watcher: asyncio.Future[None] | None = None  # started with the first streamed piece
        self.declared: int | None = None  # the app's Content-Length
        self.written = 0  # body bytes passed on, to hold the app to its Content-Length
        self.clamped = False
        self.cell: list[float] = [0.0]  # the request thread's progress cell
        self.zerocopy: Any = None
        self.scope: Scope = {}
        self.thread: int | None = None  # the request thread running the app

    def on_lost(self, _: object) -> None:
        self.disconnected = True

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.started_status:
            raise RuntimeError("start_response was already called")
        # Checked here, so a bad header is the app's error (a 500), not a
        # half-written response or a header injected into the stream.
        if not _STATUS.fullmatch(status):
            raise ValueError(f"invalid status line {status!r}")
        encoded = []
        declared = None
        for name, value in headers:
            if not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
                raise ValueError(f"invalid response header {name!r}: {value!r}")
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                raise ValueError(f"the {name!r} header is the server's to set (PEP 3333)")
            if lower == "content-length":
                if not value.isdigit():
                    raise ValueError(f"invalid Content-Length {value!r}")
                declared = int(value)
            encoded.append((lower.encode("latin-1"), value.encode("latin-1")))
        self.status, self.headers, self.started_status = int(status[:3]), encoded, True
        self.declared = declared
        return self.write

    def write(self, data: bytes) -> None:
        if not data:
            return  # headers wait for the first non-empty piece (PEP 3333)
        if not self.started_status:
            raise RuntimeError("the WSGI app produced body bytes before calling start_response")
        if self.status in _NO_BODY:
            return
        if self.declared is not None:
            data = self.clamp(data, self.written)
            self.written += len(data)
            if not data:
                return
        assert self.on_write is not None
        self.on_write(data)

    def clamp(self, data: bytes, before: int) -> bytes:
        """``data`` cut to what is left of the declared length (``before`` bytes
        already went out), as gunicorn does; a warning the first time."""
        assert self.declared is not None
        room = self.declared - before
        if len(data) <= room:
            return data
        self.clamped = True
        global _warned_long
        if not _warned_long:
            _warned_long = True
            log.warning(
                "the WSGI app sent more than its Content-Length; the rest is dropped (said once per worker)",
                content_length=self.declared,
            )
        return data[: max(room, 0)]

    def start_message(self, length: int | None) -> dict[str, Any]:
        headers = self.headers
        if self.status in _NO_BODY and self.status != 304:
            # no body, so no length (a 304's is the length a 200 would have: kept)
            headers = [(n, v) for n, v in headers if n != b"content-length"]
        elif (
            length is not None
            and self.declared is None
            and self.status not in _NO_BODY
            and (length or not self.head)  # HEAD: a body the app made anyway tells GET's length
        ):
            headers = [*headers, (b"content-length", str(length).encode())]
        if self.awaiting_continue:
            # the client still holds the body it announced: this connection cannot carry another request
            headers = [*headers, (b"connection", b"close")]
        return {"type": "http.response.start", "status": self.status, "headers": headers}

    def fail(self, exc_info: Any) -> list[bytes]:
        """An exception from the app before any byte went out: a logged 500."""
        log.error("WSGI app raised", exc_info=exc_info)
        self.status, self.started_status = 500, True
        self.headers = [(b"content-type", b"text/plain; charset=utf-8")]
        self.declared = None
        return [_ERROR_BODY]


async def _watch_disconnect(receive: Receive, response: _Response) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    response.disconnected = True


async def _send_whole(send: Send, response: _Response, chunks: list[bytes]) -> None:
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if response.status in _NO_BODY:
        body = b""
    elif response.declared is not None:
        body = response.clamp(body, 0)
    response.headers_sent = True
    await send(response.start_message(len(body)))
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _next_piece(receive: Receive, response: _Response) -> bytes | None:
    if response.body_done:
        return None
    message = await receive()
    if message["type"] == "http.disconnect":
        response.disconnected = True
        raise ClientDisconnected("the client left while sending its request body")
    response.body_done = not message.get("more_body", False)
    return bytes(message.get("body", b""))
