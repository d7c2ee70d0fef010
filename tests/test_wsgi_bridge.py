"""The WSGI bridge against PEP 3333, driven through its ASGI side in memory.

Both modes run every case: sync (one thread: the app runs in the loop) and
threaded (request threads hand results back to the loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.serve._wsgi_bridge import SPOOL_MAX, WSGIBridge


@pytest.fixture(params=[1, 4], ids=["sync", "threaded"])
def threads(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def scope(path: str = "/", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    base.update(extra)
    return base


def call(
    app: Any,
    threads: int,
    s: dict[str, Any] | None = None,
    body: list[bytes] | None = None,
    disconnect_after: int | None = None,
):
    """Run one request; return (status, headers dict, body messages). The
    client goes away once ``disconnect_after`` messages were sent to it."""
    pieces = list(body or [b""])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pieces:
            chunk = pieces.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}
        await gone.wait()  # as a server does: only a disconnect is left to say
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == disconnect_after:
            gone.set()

    async def serve() -> None:
        nonlocal gone
        gone = asyncio.Event()
        await bridge(s or scope(), receive, send)

    gone: asyncio.Event
    bridge = WSGIBridge(app, threads=threads)
    try:
        asyncio.run(serve())
    finally:
        bridge.shutdown()
    start, bodies = sent[0], sent[1:]
    assert start["type"] == "http.response.start"
    assert all(m["type"] == "http.response.body" for m in bodies)
    if disconnect_after is None:
        assert bodies[-1]["more_body"] is False
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, [m["body"] for m in bodies]


def test_environ_follows_pep_3333(threads):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    call(
        app,
        threads,
        scope(
            "/api/caf\u00e9/x",
            method="POST",
            root_path="/api",
            query_string=b"a=1&b=%20",
            headers=[
                (b"content-type", b"text/plain"),
                (b"content-length", b"0"),
                (b"x-trace", b"one"),
                (b"x-trace", b"two"),
                (b"host", b"example.test"),
            ],
        ),
    )
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["SCRIPT_NAME"] == "/api"
    # native strings: the UTF-8 bytes of the path, decoded as latin-1
    assert seen["PATH_INFO"] == "/caf\u00e9/x".encode().decode("latin-1")
    assert seen["QUERY_STRING"] == "a=1&b=%20"
    assert seen["CONTENT_TYPE"] == "text/plain"
    assert seen["CONTENT_LENGTH"] == "0"
    assert "HTTP_CONTENT_TYPE" not in seen
    assert seen["HTTP_X_TRACE"] == "one,two"
    assert seen["HTTP_HOST"] == "example.test"
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert (seen["REMOTE_ADDR"], seen["REMOTE_PORT"]) == ("127.0.0.1", "5000")
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.multithread"] is (threads > 1)
    assert seen["wsgi.multiprocess"] is True
    assert seen["wsgi.run_once"] is False


def test_request_body_in_pieces_small_and_spooled(threads):
    def app(environ, start_response):
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [str(len(data)).encode(), b":", data[:3], data[-3:]]

    _, _, body = call(app, threads, body=[b"abc", b"def", b"ghi"])
    assert b"".join(body) == b"9:abcghi"
    big = [b"x" * SPOOL_MAX, b"y" * 10, b"end"]
    _, _, body = call(app, threads, body=big)
    assert b"".join(body) == f"{SPOOL_MAX + 13}:xxxend".encode()


def test_a_list_response_goes_out_whole_with_its_length(threads):
    def app(environ, start_response):
        start_response("201 Created", [("X-A", "1")])
        return [b"hello, ", b"world"]

    status, headers, body = call(app, threads)
    assert status == 201
    assert headers["x-a"] == "1"
    assert headers["content-length"] == "12"
    assert body == [b"hello, world"]  # one message: one hand-off


def test_no_length_is_invented_for_204(threads):
    def app(environ, start_response):
        start_response("204 No Content", [])
        return []

    status, headers, _ = call(app, threads)
    assert status == 204
    assert "content-length" not in headers


def test_a_generator_streams_piece_by_piece_and_is_closed(threads):
    closed = threading.Event()

    def app(environ, start_response):
        def body() -> Iterator[bytes]:
            try:
                start_response("200 OK", [])  # PEP 3333 allows this late call
                yield b"one"
                yield b""
                yield b"two"
            finally:
                closed.set()

        return body()

    status, headers, body = call(app, threads)
    assert status == 200
    assert "content-length" not in headers  # not known in advance: chunked
    assert b"".join(body) == b"onetwo"
    assert body[0] == b"one"  # the first piece went out before the generator ended
    assert closed.is_set()


def test_write_callable(threads):
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"legacy ")
        return [b"and iterable"]

    _, _, body = call(app, threads)
    assert b"".join(body) == b"legacy and iterable"


def test_an_exception_before_any_byte_is_a_500_and_close_runs(threads, capsys):
    closed = threading.Event()

    class Result:
        def __iter__(self) -> Iterator[bytes]:
            raise ValueError("boom")

        def close(self) -> None:
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [])
        return Result()

    status, headers, body = call(app, threads)
    assert status == 500
    assert b"".join(body) == b"Internal Server Error"
    assert headers["content-length"] == "21"
    assert closed.is_set()
    logged = capsys.readouterr()
    assert "boom" in logged.out + logged.err  # logged with its traceback


def test_exc_info_replaces_the_status_before_headers_are_sent(threads):
    def app(environ, start_response):
        start_response("200 OK", [("X-Partial", "1")])
        try:
            raise KeyError("missing")
        except KeyError:
            import sys

            start_response("503 Service Unavailable", [("Retry-After", "1")], sys.exc_info())
        return [b"later"]

    status, headers, body = call(app, threads)
    assert status == 503
    assert headers.get("retry-after") == "1" and "x-partial" not in headers
    assert body == [b"later"]


def test_an_error_after_bytes_went_out_cuts_the_response():
    def app(environ, start_response):
        def body() -> Iterator[bytes]:
            start_response("200 OK", [])
            yield b"partial"
            raise RuntimeError("mid-body")

        return body()

    # threaded and sync alike: the exception reaches the server, which drops
    # the connection rather than end a truncated body as if it were whole
    for threads in (1, 4):
        with pytest.raises(RuntimeError, match="mid-body"):
            call(app, threads)


def test_start_response_twice_without_exc_info_is_an_error(threads):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]

    status, _, _ = call(app, threads)
    assert status == 500


def test_threaded_mode_runs_requests_side_by_side():
    """Two requests that each wait for the other only finish if they run at once."""
    barrier = threading.Barrier(2, timeout=5)

    def app(environ, start_response):
        barrier.wait()
        start_response("200 OK", [])
        return [b"ok"]

    bridge = WSGIBridge(app, threads=2)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def both() -> None:
        await asyncio.gather(bridge(scope(), receive, send), bridge(scope(), receive, send))

    try:
        asyncio.run(both())
    finally:
        bridge.shutdown()
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200, 200]


def test_an_endless_stream_ends_when_its_client_goes(threads):
    closed = threading.Event()

    def app(environ, start_response):
        def forever() -> Iterator[bytes]:
            start_response("200 OK", [])
            try:
                while True:
                    yield b"tick"
            finally:
                closed.set()

        return forever()

    _, _, body = call(app, threads, disconnect_after=5)
    assert closed.is_set()  # the generator was closed, not left running
    assert 4 <= len(body) <= 6  # it stopped at the next piece
