"""Run a WSGI app under an ASGI server (PEP 3333 on one side, ASGI 3 on the other).

The app always runs in a request thread (``--threads`` of them; one thread is
gunicorn's sync model: one request at a time per worker). The cost of such a
bridge is the hand-off between the event loop and that thread, so it makes as
few as it can:

* a request body that arrives in one piece (most do) is read in the loop before
  the app runs; a longer one is pulled piece by piece when the app reads
  ``wsgi.input``, as a sync server reads its socket, so an app can refuse an
  upload by its length, or stream it, without the server storing it first;
* a response the app returns as a list or tuple comes back to the loop whole,
  with its length, in the same hand-off that ran the app;
* any other iterable (a generator, a framework's response object) and
  ``write()`` go out piece by piece, and the thread waits for each piece to be
  sent, so a slow client holds back the app instead of filling memory. A client
  that takes nothing for ``send_timeout`` seconds, or goes away, ends the
  response: the app's iterator is closed, as a failed socket write would end it
  under a sync server.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import IO, Any
from urllib.parse import unquote_to_bytes

from supervisor.logging import get_logger

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WSGIApp = Callable[..., Iterable[bytes]]

log = get_logger("supervisor.wsgi")

_ERROR_BODY = b"Internal Server Error"
_NO_BODY = frozenset({100, 101, 102, 103, 204, 304})  # statuses that never carry a body
_STATUS = re.compile(r"[1-5][0-9][0-9] [^\r\n\0]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# PEP 3333: these describe the connection, which is the server's to manage
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer"}
    | {"transfer-encoding", "upgrade"}
)


class ClientDisconnected(OSError):
    """Raised into a streaming app when its client has gone (or takes nothing
    for too long), as a socket write would raise under a sync WSGI server."""


class WSGIBridge:
    """An ASGI 3 app that serves ``app`` from ``threads`` request threads."""

    def __init__(self, app: WSGIApp, threads: int = 1, send_timeout: float | None = None) -> None:
        self.app = app
        self.threads = threads
        self.send_timeout = send_timeout
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="wsgi")
        self._closing = False

    def shutdown(self) -> None:
        """The server has stopped: pieces still being streamed end the response."""
        self._closing = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off for WSGI apps; websockets have no WSGI meaning
        first = await receive()
        if first["type"] == "http.disconnect":
            return  # the client left before its request was complete: nothing to run
        response = _Response(head=scope["method"] == "HEAD")
        loop = asyncio.get_running_loop()
        body: IO[bytes] | _StreamedInput
        if first.get("more_body", False):

            def pull() -> bytes | None:  # request thread: the next piece, None at the end
                if self._closing:
                    raise ClientDisconnected("the server is stopping")
                return asyncio.run_coroutine_threadsafe(_next_piece(receive, response), loop).result()

            body = _StreamedInput(first.get("body", b""), pull)
        else:
            body = io.BytesIO(first.get("body", b""))
            response.body_done = True

        def stream(chunk: bytes, final: bool = False) -> None:  # request thread
            if response.disconnected or self._closing:
                raise ClientDisconnected("the client is gone")
            piece = self._send_piece(send, receive, response, chunk, final)
            asyncio.run_coroutine_threadsafe(piece, loop).result()

        try:
            environ = _environ(scope, body, multithread=self.threads > 1)
            whole = await loop.run_in_executor(self._executor, self._run_app, environ, response, stream)
            if whole is not None:  # the body is all here: it goes out in one message
                chunks, result = whole
                await _send_whole(send, response, chunks)
                if hasattr(result, "close"):
                    await loop.run_in_executor(self._executor, _close, result)
        except asyncio.CancelledError:
            response.disconnected = True  # the server gave up on it: stop the thread's stream too
            raise
        finally:
            body.close()
            if response.watcher is not None:
                response.watcher.cancel()

    def _run_app(
        self, environ: dict[str, Any], response: _Response, stream: Callable[..., None]
    ) -> tuple[list[bytes], object] | None:
        """In a request thread: run the app. Returns the whole body for the loop
        to send, or None when the response was streamed (and closed) here."""
        response.on_write = stream
        try:
            result = self.app(environ, response.start_response)
        except ClientDisconnected:
            return None  # it left mid-request: nobody to answer
        except Exception:
            return response.fail(sys.exc_info()), None
        if isinstance(result, list | tuple) and not response.headers_sent:
            return list(result), result
        try:
            for chunk in result:
                response.write(chunk)
            if not response.headers_sent:
                return [], result  # only empty pieces: the response goes out whole
            stream(b"", final=True)
        except ClientDisconnected:
            pass  # the response cannot be finished; closing the iterator below is all
        except Exception:
            if response.headers_sent:
                _close(result)
                raise  # bytes went out: the server cuts the connection, never a short "whole" body
            return response.fail(sys.exc_info()), result
        _close(result)
        return None

    async def _send_piece(
        self, send: Send, receive: Receive, response: _Response, chunk: bytes, final: bool
    ) -> None:
        if response.watcher is None and response.body_done:
            # only streamed responses can outlive their client (an endless generator);
            # while the app may still read its body, that read is the one receiving
            response.watcher = asyncio.ensure_future(_watch_disconnect(receive, response))
        messages = []
        if not response.headers_sent:
            response.headers_sent = True
            messages.append(response.start_message(None))
        messages.append({"type": "http.response.body", "body": chunk, "more_body": not final})
        for message in messages:
            try:
                await asyncio.wait_for(send(message), self.send_timeout)
            except TimeoutError:
                response.disconnected = True
                log.warning("client took no data; dropping the response", timeout_s=self.send_timeout)
                raise ClientDisconnected("the client took no data") from None


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
        self.watcher: asyncio.Future[None] | None = None  # started with the first streamed piece

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
        for name, value in headers:
            if not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
                raise ValueError(f"invalid response header {name!r}: {value!r}")
            if name.lower() in _HOP_BY_HOP:
                raise ValueError(f"the {name!r} header is the server's to set (PEP 3333)")
            encoded.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        self.status, self.headers, self.started_status = int(status[:3]), encoded, True
        return self.write

    def write(self, data: bytes) -> None:
        if not data:
            return  # headers wait for the first non-empty piece (PEP 3333)
        if not self.started_status:
            raise RuntimeError("the WSGI app produced body bytes before calling start_response")
        if self.status in _NO_BODY:
            return
        assert self.on_write is not None
        self.on_write(data)

    def start_message(self, length: int | None) -> dict[str, Any]:
        headers = self.headers
        if self.status in _NO_BODY:
            # no body, so no length to check it against (the server would)
            headers = [(n, v) for n, v in headers if n != b"content-length"]
        elif length is not None and not self.head and not any(n == b"content-length" for n, _ in headers):
            headers = [*headers, (b"content-length", str(length).encode())]
        return {"type": "http.response.start", "status": self.status, "headers": headers}

    def fail(self, exc_info: Any) -> list[bytes]:
        """An exception from the app before any byte went out: a logged 500."""
        log.error("WSGI app raised", exc_info=exc_info)
        self.status, self.started_status = 500, True
        self.headers = [(b"content-type", b"text/plain; charset=utf-8")]
        return [_ERROR_BODY]


async def _watch_disconnect(receive: Receive, response: _Response) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    response.disconnected = True


async def _send_whole(send: Send, response: _Response, chunks: list[bytes]) -> None:
    if not response.started_status:
        raise RuntimeError("the WSGI app returned without calling start_response")
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if response.status in _NO_BODY:
        body = b""
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


class _StreamedInput:
    """``wsgi.input`` for a body that arrives in pieces: reading pulls the next
    piece from the loop (``pull`` returns None at the end of the body)."""

    def __init__(self, first: bytes, pull: Callable[[], bytes | None]) -> None:
        self._buffer = bytearray(first)
        self._pull = pull
        self._ended = False

    def _fill(self) -> bool:
        """Add one more piece to the buffer; False once the body has ended."""
        while not self._ended:
            piece = self._pull()
            if piece is None:
                self._ended = True
            elif piece:
                self._buffer += piece
                return True
        return False

    def _take(self, n: int) -> bytes:
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        searched = 0
        while True:
            newline = self._buffer.find(b"\n", searched)
            if newline >= 0 and (limit < 0 or newline < limit):
                return self._take(newline + 1)
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            searched = len(self._buffer)
            if not self._fill():
                return self._take(len(self._buffer))

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def close(self) -> None:
        self._buffer.clear()


def _environ(scope: Scope, body: IO[bytes] | _StreamedInput, *, multithread: bool) -> dict[str, Any]:
    # PATH_INFO from the raw path: ASGI's "path" is already decoded as UTF-8,
    # which garbles escapes that are not UTF-8 (PEP 3333 wants the bytes)
    path = unquote_to_bytes(scope.get("raw_path") or scope["path"].encode("utf-8"))
    root = scope.get("root_path", "").encode("utf-8")
    if root and (path == root or path.startswith(root + b"/")):
        path = path[len(root) :]
    scheme = scope.get("scheme", "http")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        # WSGI strings are bytes decoded as latin-1 (PEP 3333 "native strings")
        "SCRIPT_NAME": root.decode("latin-1"),
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": body,
        # reading past the body returns b"", so a reader may read to its end
        # (how frameworks read a chunked upload, which has no CONTENT_LENGTH)
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(client[0]), str(client[1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if "_" in name:
            # X_Forwarded_For would land in HTTP_X_FORWARDED_FOR beside the real
            # one, past a proxy that only rewrites the dashed name: drop it
            continue
        value = raw_value.decode("latin-1")
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:  # repeated headers fold into one (RFC 9110 5.3); cookies with ";"
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    server = scope.get("server")
    if server and server[1] is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = str(server[0]), str(server[1])
    else:  # a unix socket: the Host header says what the client asked for
        host, _, port = environ.get("HTTP_HOST", "localhost").rpartition(":")
        if not host or not port.isdigit():
            host, port = environ.get("HTTP_HOST", "localhost"), ("443" if scheme == "https" else "80")
        environ["SERVER_NAME"], environ["SERVER_PORT"] = host, port
    return environ
