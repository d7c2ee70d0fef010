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

A client that leaves is seen whatever state its request body is in: the
protocol layer (``_http``) hands the bridge its connection's "lost" future
in the scope's extensions. A request thread that makes no progress (no piece
sent, no piece of body read) for longer than ``--timeout`` while every other
thread is just as stuck stops the worker's heartbeat (``stalled_since``), so
the master dumps its stacks and replaces it, as gunicorn's sync worker is.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import select
import stat
import sys
import threading
import time
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


# scope["extensions"] keys the protocol layer (supervisor.worker.runners._http) provides
LOST = "supervise.connection_lost"  # a future, done when the connection is gone
CONTINUE = "supervise.send_continue"  # () -> None: answer "Expect: 100-continue"
ZEROCOPY = "supervise.zerocopy"  # the protocol: zerocopy_begin(scope, ...), zerocopy_abort(scope), loop


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
        # one [time] cell per request thread: when its request last made progress, 0.0 when idle
        self._cells: list[list[float]] = []
        self._cell = threading.local()

    def stalled_since(self) -> float | None:
        """When this bridge last had a request thread to spare or making
        progress; None while it has. The worker's heartbeat stops there."""
        cells = self._cells[:]
        if len(cells) < self.threads:
            return None  # a thread was never started: capacity to spare
        since = 0.0
        for cell in cells:
            if cell[0] == 0.0:
                return None
            since = max(since, cell[0])
        return since

    def _progress_cell(self) -> list[float]:
        cell: list[float] | None = getattr(self._cell, "cell", None)
        if cell is None:
            cell = self._cell.cell = [0.0]
            self._cells.append(cell)
        return cell

    def shutdown(self) -> None:
        """The server has stopped: pieces still being streamed end the response."""
        self._closing = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off for WSGI apps; websockets have no WSGI meaning
        ext = scope.get("extensions") or {}
        response = _Response(head=scope["method"] == "HEAD")
        lost: asyncio.Future[None] | None = ext.get(LOST)
        on_lost = response.on_lost
        if lost is not None:
            if lost.done():
                return
            lost.add_done_callback(on_lost)
        loop = asyncio.get_running_loop()
        send_continue: Callable[[], None] | None = ext.get(CONTINUE)
        if send_continue is not None:
            # the client sends its body only once told to: that is the app's first read
            first: dict[str, Any] = {"type": "http.request", "body": b"", "more_body": True}
            response.awaiting_continue = True
        else:
            first = await receive()
            if first["type"] == "http.disconnect":
                return  # the client left before its request was complete: nothing to run
        body: IO[bytes] | _StreamedInput
        if first.get("more_body", False):
            read_timeout = self.send_timeout

            def pull() -> bytes | None:  # request thread: the next piece, None at the end
                if self._closing:
                    raise ClientDisconnected("the server is stopping")
                if response.awaiting_continue and send_continue is not None:
                    response.awaiting_continue = False
                    loop.call_soon_threadsafe(send_continue)
                future = asyncio.run_coroutine_threadsafe(_next_piece(receive, response), loop)
                try:
                    piece = future.result(read_timeout)
                except TimeoutError:
                    future.cancel()
                    log.warning(
                        "client sent no body for too long; dropping the request", timeout_s=read_timeout
                    )
                    raise ClientDisconnected("the client sent nothing") from None
                response.cell[0] = time.monotonic()
                return piece

            body = _StreamedInput(first.get("body", b""), pull)
        else:
            body = io.BytesIO(first.get("body", b""))
            response.body_done = True

        def stream(chunk: bytes, final: bool = False) -> None:  # request thread
            if response.disconnected or self._closing:
                raise ClientDisconnected("the client is gone")
            piece = self._send_piece(send, receive, response, chunk, final, lost is None)
            asyncio.run_coroutine_threadsafe(piece, loop).result()
            response.cell[0] = time.monotonic()

        try:
            environ = _environ(scope, body, multithread=self.threads > 1)
            response.zerocopy = ext.get(ZEROCOPY)
            response.scope = scope
            whole = await loop.run_in_executor(self._executor, self._run_app, environ, response, stream)
            if whole is not None:  # the body is all here: it goes out in one message
                chunks, result = whole
                try:
                    await _send_whole(send, response, chunks)
                finally:
                    if hasattr(result, "close"):
                        await loop.run_in_executor(self._executor, _close, result)
        except asyncio.CancelledError:
            response.disconnected = True  # the server gave up on it: stop the thread's stream too
            raise
        finally:
            body.close()
            if lost is not None:
                lost.remove_done_callback(on_lost)
            if response.watcher is not None:
                response.watcher.cancel()

    def _run_app(
        self, environ: dict[str, Any], response: _Response, stream: Callable[..., None]
    ) -> tuple[list[bytes], object] | None:
        """In a request thread: run the app. Returns the whole body for the loop
        to send, or None when the response was streamed (and closed) here."""
        cell = response.cell = self._progress_cell()
        cell[0] = time.monotonic()
        response.on_write = stream
        try:
            result = self.app(environ, response.start_response)
        except ClientDisconnected:
            cell[0] = 0.0
            return None  # it left mid-request: nobody to answer
        except Exception:
            cell[0] = 0.0
            return response.fail(sys.exc_info()), None
        if isinstance(result, list | tuple) and response.started_status and not response.headers_sent:
            cell[0] = 0.0
            return list(result), result  # the common case, in the fewest steps
        try:
            return self._finish(result, response, stream)
        finally:
            cell[0] = 0.0

    def _finish(
        self, result: Iterable[bytes], response: _Response, stream: Callable[..., None]
    ) -> tuple[list[bytes], object] | None:
        if isinstance(result, list | tuple) and not response.headers_sent:
            if not response.started_status:
                return response.fail(_no_start_response()), result
            return list(result), result
        try:
            if isinstance(result, FileWrapper) and self._send_file(result, response, stream):
                _close(result)
                return None
            for chunk in result:
                response.write(chunk)
                if response.clamped:
                    break  # past its own Content-Length: what follows cannot be sent
            if not response.headers_sent:
                if not response.started_status:
                    return response.fail(_no_start_response()), result
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

    def _send_file(self, wrapper: FileWrapper, response: _Response, stream: Callable[..., None]) -> bool:
        """Send a regular file with ``sendfile`` when the protocol lends its
        socket; False to fall back to iterating the wrapper (headers unsent)."""
        region = wrapper.region()
        if region is None or not response.started_status or response.headers_sent:
            return False
        fd, offset, count = region
        if response.declared is None:
            response.headers.append((b"content-length", str(count).encode()))
            response.declared = count
        elif response.declared > count:
            return False  # the file is shorter than declared: the iterating path cuts it
        count = response.declared
        if response.head or response.status in _NO_BODY or count == 0:
            stream(b"", final=True)
            return True
        zerocopy = response.zerocopy
        if zerocopy is None:
            return False
        loop = zerocopy.loop
        response.headers_sent = True
        begin = zerocopy.zerocopy_begin(response.scope, response.start_message(None), count)
        sock = asyncio.run_coroutine_threadsafe(begin, loop).result()
        if sock is None:  # the headers went out, but the socket is not free: copy the file
            for chunk in wrapper:
                response.write(chunk)
                if response.clamped:
                    break
            stream(b"", final=True)
            return True
        try:
            _sendfile(sock, fd, offset, count, self.send_timeout, response.cell)
        except OSError:
            response.disconnected = True
            loop.call_soon_threadsafe(zerocopy.zerocopy_abort, response.scope)
            raise ClientDisconnected("the file could not be sent") from None
        stream(b"", final=True)
        return True

    async def _send_piece(
        self, send: Send, receive: Receive, response: _Response, chunk: bytes, final: bool, watch: bool
    ) -> None:
        if watch and response.watcher is None and response.body_done:
            # without the protocol's "lost" future, only the receive channel says the client
            # left; while the app may still read its body, that read is the one receiving
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


def _sendfile(sock: int, fd: int, offset: int, count: int, timeout: float | None, cell: list[float]) -> None:
    """Copy ``count`` bytes of ``fd`` to the non-blocking socket ``sock`` in the
    kernel, waiting (in this request thread) while the socket is full."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    wait_ms = -1 if timeout is None else int(timeout * 1000)
    while count > 0:
        try:
            sent = os.sendfile(sock, fd, offset, min(count, 1 << 30))
        except BlockingIOError:
            if not poller.poll(wait_ms):
                log.warning("client took no data; dropping the response", timeout_s=timeout)
                raise TimeoutError("the client took no data") from None
            continue
        if sent == 0:
            raise OSError("the file ended before its length")
        offset += sent
        count -= sent
        cell[0] = time.monotonic()


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


class FileWrapper:
    """``wsgi.file_wrapper``: a file the app returns whole. Iterating reads it
    in blocks; the bridge sends a regular file with ``sendfile`` instead."""

    def __init__(self, filelike: Any, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def region(self) -> tuple[int, int, int] | None:
        """(fd, offset, count) from the file's position to its end, for a
        regular file; None for anything else (a pipe, a BytesIO)."""
        try:
            fd = self.filelike.fileno()
            size = os.fstat(fd)
            offset = self.filelike.tell()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        if not stat.S_ISREG(size.st_mode) or not isinstance(fd, int):
            return None
        return fd, offset, max(size.st_size - offset, 0)

    def __iter__(self) -> Iterator[bytes]:
        while block := self.filelike.read(self.block_size):
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


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
        "wsgi.file_wrapper": FileWrapper,
    }
    repeated: dict[str, list[str]] = {}
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
            # joined once at the end: adding to a string each time is quadratic in the repeats
            repeated.setdefault(key, [environ[key]]).append(value)
        environ[key] = value
    for key, values in repeated.items():
        environ[key] = ("; " if key == "HTTP_COOKIE" else ",").join(values)
    server = scope.get("server")
    if server and server[1] is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = str(server[0]), str(server[1])
    else:  # a unix socket: the Host header says what the client asked for
        host, _, port = environ.get("HTTP_HOST", "localhost").rpartition(":")
        if not host or not port.isdigit():
            host, port = environ.get("HTTP_HOST", "localhost"), ("443" if scheme == "https" else "80")
        environ["SERVER_NAME"], environ["SERVER_PORT"] = host, port
    return environ
