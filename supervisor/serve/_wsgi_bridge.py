"""Run a WSGI app under an ASGI server (PEP 3333 on one side, ASGI 3 on the other).

The cost of such a bridge is the hand-off between the event loop and the
thread that runs the app, so it makes as few as it can:

* the request body is read in the loop first (spooled to disk past 1 MiB), so
  ``wsgi.input`` never has to call back into the loop;
* the app runs in a request thread, and a response it returns as a list or
  tuple (the usual case) comes back to the loop whole, in the same hand-off;
* only a response produced piece by piece (a generator, ``write()``) goes back
  to the loop once per piece, and the thread waits for each piece to be sent,
  so a slow client holds back the app instead of filling memory.

With one request thread the app runs in the loop itself: one request at a time
per worker, with no hand-off at all, which is what gunicorn's sync worker does.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import IO, Any

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WSGIApp = Callable[..., Iterable[bytes]]

SPOOL_MAX = 1024 * 1024  # request bodies larger than this go to a temporary file
_ERROR_BODY = b"Internal Server Error"
_NO_BODY = frozenset({100, 101, 102, 103, 204, 304})


class WSGIBridge:
    """An ASGI 3 app that serves ``app`` with ``threads`` request threads."""

    def __init__(self, app: WSGIApp, threads: int = 1) -> None:
        self.app = app
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(threads, thread_name_prefix="wsgi") if threads > 1 else None
        )

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off for WSGI apps; websockets have no WSGI meaning
        body = await _read_body(receive)
        response = _Response()
        try:
            environ = _environ(scope, body, multithread=self._executor is not None)
            if self._executor is None:
                await self._serve_inline(environ, response, send, receive)
                return
            loop = asyncio.get_running_loop()

            def stream(chunk: bytes) -> None:  # request thread: send one piece, wait for it
                coro = _send_chunk(send, receive, response, chunk)
                asyncio.run_coroutine_threadsafe(coro, loop).result()

            rest = await loop.run_in_executor(self._executor, self._run_in_thread, environ, response, stream)
            await _send_all(send, response, rest)
        finally:
            body.close()  # a spooled body may be a temporary file
            if response.watcher is not None:
                response.watcher.cancel()

    async def _serve_inline(
        self, environ: dict[str, Any], response: _Response, send: Send, receive: Receive
    ) -> None:
        """Sync mode: the app and its iterator run in the loop; pieces go out as
        they are produced."""
        try:
            result = self.app(environ, response.start_response)
        except Exception:
            await _send_all(send, response, response.fail(sys.exc_info()))
            return
        try:
            if isinstance(result, list | tuple):
                chunks = response.take(list(result))
            else:
                for chunk in result:
                    if response.started_status:
                        for piece in response.take([chunk]):
                            await _send_chunk(send, receive, response, piece)
                        # let the loop run its I/O between pieces: a gone client is
                        # only noticed that way, and flow control with it
                        await asyncio.sleep(0)
                    else:
                        response.pending.append(chunk)
                chunks = response.take([])
        except ClientDisconnected:
            chunks = []
        except Exception:
            chunks = response.fail(sys.exc_info())
        finally:
            _close(result)
        await _send_all(send, response, chunks)

    def _run_in_thread(
        self, environ: dict[str, Any], response: _Response, stream: Callable[[bytes], None]
    ) -> list[bytes]:
        """Run the app in a request thread; return the body pieces not streamed yet."""
        response.on_write = stream
        try:
            result = self.app(environ, response.start_response)
        except Exception:
            return response.fail(sys.exc_info())
        try:
            if isinstance(result, list | tuple):
                return response.take(list(result))
            for chunk in result:
                if response.started_status:
                    response.write(chunk)
                else:
                    response.pending.append(chunk)
            return response.take([])
        except ClientDisconnected:
            return []
        except Exception:
            return response.fail(sys.exc_info())
        finally:
            _close(result)


def _close(result: object) -> None:
    close = getattr(result, "close", None)  # PEP 3333: always, even after an error
    if close is not None:
        close()


class ClientDisconnected(OSError):
    """Raised into a streaming app when its client has gone away, as a socket
    write would raise under a sync WSGI server; the bridge ends the response."""


class _Response:
    """The state of one response, shared by ``start_response``, ``write()`` and
    the loop that sends it."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started_status = False  # start_response was called
        self.headers_sent = False  # http.response.start has gone out
        self.pending: list[bytes] = []  # write() output and pieces not sent yet
        self.on_write: Callable[[bytes], None] | None = None
        self.disconnected = False
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
        self.status = int(status[:3])
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        self.started_status = True
        return self.write

    def write(self, data: bytes) -> None:
        if self.on_write is not None and self.pending:
            for piece in self.take([]):
                self.on_write(piece)
        if self.on_write is not None:
            self.on_write(data)
        else:
            self.pending.append(data)

    def take(self, more: list[bytes]) -> list[bytes]:
        out, self.pending = self.pending + more, []
        return out

    def fail(self, exc_info: Any) -> list[bytes]:
        """An exception from the app: a 500 if nothing was sent yet, else the
        connection is cut (the client must not take half a body for a whole one)."""
        if self.headers_sent:
            raise exc_info[1]
        from supervisor.logging import get_logger

        get_logger("supervisor.wsgi").error("WSGI app raised", exc_info=exc_info)
        self.status, self.started_status = 500, True
        self.headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]
        self.pending = []
        return [_ERROR_BODY]


async def _send_chunk(send: Send, receive: Receive, response: _Response, chunk: bytes) -> None:
    if response.watcher is None:
        # only streamed responses can outlive their client (an endless generator)
        response.watcher = asyncio.ensure_future(_watch_disconnect(receive, response))
    if response.disconnected:
        raise ClientDisconnected("the client closed the connection")
    if not response.headers_sent:
        response.headers_sent = True
        await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    if chunk:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _watch_disconnect(receive: Receive, response: _Response) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    response.disconnected = True


async def _send_all(send: Send, response: _Response, chunks: list[bytes]) -> None:
    if not response.started_status:
        raise RuntimeError("the WSGI app returned without calling start_response")
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not response.headers_sent:
        response.headers_sent = True
        if response.status not in _NO_BODY and not any(n == b"content-length" for n, _ in response.headers):
            # the whole body is in hand: say how long it is (no chunked encoding)
            response.headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> IO[bytes]:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return io.BytesIO(body)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)  # noqa: SIM115 (the caller closes it)
    spool.write(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        spool.write(message.get("body", b""))
    spool.seek(0)
    return spool


def _environ(scope: Scope, body: IO[bytes], *, multithread: bool) -> dict[str, Any]:
    root = scope.get("root_path", "")
    path: str = scope["path"]
    if root and path.startswith(root):
        path = path[len(root) :]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        # WSGI strings are bytes decoded as latin-1 (PEP 3333 "native strings")
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
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
        value = raw_value.decode("latin-1")
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:
            value = f"{environ[key]},{value}"  # repeated headers fold into one (RFC 9110 5.3)
        environ[key] = value
    return environ
