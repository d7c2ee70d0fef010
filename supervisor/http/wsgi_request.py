"""What a WSGI app is given: its environ, ``wsgi.input`` (a body read in
pieces as the app asks) and ``wsgi.file_wrapper``, and the scope extensions the
protocol layer (``protocol``) hands the bridge and the deadline layer."""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any
from urllib.parse import unquote_to_bytes

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WSGIApp = Callable[..., Iterable[bytes]]

LOST = "supervise.connection_lost"  # a future, done when the connection is gone
ARRIVAL = "supervise.arrival"  # when the request reached the worker (time.monotonic())
BUDGET = "supervise.budget"  # its TimeBudget (the deadline layer puts it there)
CONTINUE = "supervise.send_continue"  # () -> None: answer "Expect: 100-continue"
ZEROCOPY = "supervise.zerocopy"  # the protocol: zerocopy_begin(scope, ...), zerocopy_abort(scope), loop


class ClientDisconnected(OSError):
    """Raised into a streaming app when its client has gone (or takes nothing
    for too long), as a socket write would raise under a sync WSGI server."""


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
