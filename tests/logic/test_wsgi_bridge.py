"""The WSGI bridge against PEP 3333, driven through its ASGI side in memory.

Every case runs with one request thread (gunicorn's sync model) and with four."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.http.wsgi_bridge import WSGIBridge


@pytest.fixture(params=[1, 4], ids=["one-thread", "threads"])
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
    send_timeout: float | None = None,
    stall_after: int | None = None,
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
        if stall_after is not None and len(sent) >= stall_after:
            await asyncio.Event().wait()  # a client that stopped reading
        sent.append(message)
        if len(sent) == disconnect_after:
            gone.set()

    async def serve() -> None:
        nonlocal gone
        gone = asyncio.Event()
        await bridge(s or scope(), receive, send)

    gone: asyncio.Event
    bridge = WSGIBridge(app, threads=threads, send_timeout=send_timeout)
    try:
        asyncio.run(serve())
    finally:
        bridge.shutdown()
    start, bodies = sent[0], sent[1:]
    assert start["type"] == "http.response.start"
    assert all(m["type"] == "http.response.body" for m in bodies)
    if disconnect_after is None and stall_after is None:
        assert bodies[-1]["more_body"] is False
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, [m["body"] for m in bodies]


async def no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def serve(
    app: Any, threads: int, receive: Any = no_body, s: dict[str, Any] | None = None, requests: int = 1
) -> list[dict[str, Any]]:
    """Run ``requests`` requests at once through one bridge, each reading with
    ``receive``; return every message sent, in order."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def all_requests() -> None:
        await asyncio.gather(*(bridge(s or scope(), receive, send) for _ in range(requests)))

    bridge = WSGIBridge(app, threads=threads)
    try:
        asyncio.run(all_requests())
    finally:
        bridge.shutdown()
    return sent


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
    assert seen["wsgi.input_terminated"] is True
    assert seen["wsgi.multiprocess"] is True
    assert seen["wsgi.run_once"] is False


def test_request_body_in_pieces_read_as_the_app_reads(threads):
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        head = stream.read(2)
        line = stream.readline()
        rest = stream.read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"|".join([head, line, rest, stream.read(), stream.readline()])]

    _, _, body = call(app, threads, body=[b"abc", b"d\nef", b"gh"])
    assert body == [b"ab|cd\n|efgh||"]  # past the end: b"", as a file gives
    big = [b"x" * 65536] * 40 + [b"end\n"]
    _, _, body = call(app, threads, body=big)
    assert body == [b"xx|" + b"x" * (65536 * 40 - 2) + b"end\n|||"]  # the line was all of it


def test_readline_limits_and_iteration(threads):
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        first = stream.readline(3)
        rest = list(stream)
        start_response("200 OK", [])
        return [repr((first, rest)).encode()]

    _, _, body = call(app, threads, body=[b"one\ntw", b"o\nthr", b"ee"])
    assert body == [repr((b"one", [b"\n", b"two\n", b"three"])).encode()]


def test_an_app_can_refuse_an_upload_without_receiving_it(threads):
    """Like under a sync server, the body is only read when the app reads it."""
    received: list[int] = []

    def app(environ, start_response):
        if int(environ["CONTENT_LENGTH"]) > 1000:
            start_response("413 Content Too Large", [])
            return [b"too large"]
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    pieces = [b"x" * 500] * 10

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)}

    sent = serve(app, threads, receive, scope(method="POST", headers=[(b"content-length", b"5000")]))
    assert sent[0]["status"] == 413
    assert len(received) == 1  # the first piece only: the other 4.5 kB were never pulled


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


def test_a_small_iterable_with_a_length_goes_out_whole_in_one_message(threads):
    # a framework's response object (Flask, Django) is an iterable with close(), not a list
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "6")])
        return IterWithClose([b"one", b"", b"two"], closed)

    status, headers, body = call(app, threads)
    assert (status, headers["content-length"], body) == (200, "6", [b"onetwo"])
    assert closed.is_set()


def test_write_called_while_a_small_response_is_gathered_keeps_the_order(threads):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "10")])

        def body() -> Iterator[bytes]:
            write(b"01234")  # the legacy write() from inside the iterable: the head goes out now
            yield b"56789"

        return body()

    status, headers, body = call(app, threads)
    assert (status, headers["content-length"], b"".join(body)) == (200, "10", b"0123456789")


def test_an_iterable_longer_than_the_collect_limit_streams(threads):
    from supervisor.http.wsgi_bridge import COLLECT_LIMIT

    piece = b"x" * 4096
    count = COLLECT_LIMIT // len(piece) + 2

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(piece) * count))])
        return iter([piece] * count)

    status, headers, body = call(app, threads)
    assert status == 200 and headers["content-length"] == str(len(piece) * count)
    assert body[0] == piece  # piece by piece, not gathered
    assert b"".join(body) == piece * count


def test_an_iterable_that_yields_str_is_a_500(threads, capsys):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5")])
        return iter(["hello"])

    status, _, body = call(app, threads)
    assert (status, body) == (500, [b"Internal Server Error"])
    logged = capsys.readouterr()
    assert "yielded str, not bytes" in logged.out + logged.err


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

    sent = serve(app, 2, requests=2)
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


def test_headers_an_attacker_could_smuggle_or_split(threads):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    headers = [
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x_forwarded_for", b"6.6.6.6"),  # must not join the proxy's value
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
    ]
    call(app, threads, scope(headers=headers))
    assert seen["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert seen["HTTP_COOKIE"] == "a=1; b=2"  # cookie parsers split on ";"


def test_a_chunked_upload_reads_to_its_end(threads):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]  # allowed: wsgi.input_terminated

    _, _, body = call(app, threads, scope(method="POST"), body=[b"hel", b"lo"])
    assert "CONTENT_LENGTH" not in seen and seen["wsgi.input_terminated"] is True
    assert body == [b"hello"]


def test_a_client_gone_mid_body_is_an_error_to_the_app_not_a_short_body(threads):
    outcome: list[object] = []

    def app(environ, start_response):
        try:
            outcome.append(environ["wsgi.input"].read())
        except OSError as exc:  # as a socket read would raise under a sync server
            outcome.append(type(exc).__name__)
            raise
        start_response("200 OK", [])
        return [b""]

    messages = [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    sent = serve(app, threads, receive, scope(method="POST"))
    assert outcome == ["ClientDisconnected"] and sent == []


def test_a_client_gone_before_the_request_runs_nothing(threads):
    ran = threading.Event()

    def app(environ, start_response):
        ran.set()
        start_response("200 OK", [])
        return [b""]

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert serve(app, threads, receive, scope(method="POST")) == []  # nothing to send to a client that left
    assert not ran.is_set()


def test_path_info_keeps_bytes_that_are_not_utf8(threads):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    call(app, threads, scope("/caf\ufffd", raw_path=b"/caf%E9"))
    assert seen["PATH_INFO"] == "/caf\xe9"


def test_server_name_on_a_unix_socket_comes_from_host(threads):
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    call(app, threads, scope(server=("/run/app.sock", None), headers=[(b"host", b"example.test:8443")]))
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("example.test", "8443")
    call(app, threads, scope(server=("/run/app.sock", None), client=None))
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"], seen["REMOTE_ADDR"]) == ("localhost", "80", "")


def test_an_empty_first_piece_does_not_commit_the_headers(threads):
    def app(environ, start_response):
        def body() -> Iterator[bytes]:
            start_response("200 OK", [])
            yield b""
            raise ValueError("before any byte")

        return body()

    status, _, body = call(app, threads)
    assert (status, body) == (500, [b"Internal Server Error"])


def test_head_and_no_body_statuses(threads):
    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "HEAD":
            start_response("200 OK", [])
            return []
        start_response("304 Not Modified", [("Content-Length", "100"), ("ETag", '"x"')])
        return [b"a body a 304 must not carry"]

    _, headers, _ = call(app, threads, scope(method="HEAD"))
    assert "content-length" not in headers  # not "0": GET would say otherwise
    status, headers, body = call(app, threads)
    # a 304's length is the one a 200 would have (RFC 9110 8.6): the app's stays, the body goes
    assert status == 304 and headers["content-length"] == "100" and headers["etag"] == '"x"'
    assert b"".join(body) == b""


def test_close_runs_once_the_body_is_in_hand_and_its_error_does_not_replace_it(threads, capsys):
    order: list[str] = []

    class Body(list):  # type: ignore[type-arg]
        def close(self) -> None:
            order.append("close")
            raise OSError("cleanup failed")

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body([b"hello"])

    status, _, body = call(app, threads)
    assert (status, body, order) == (200, [b"hello"], ["close"])
    logged = capsys.readouterr()
    assert "cleanup failed" in logged.out + logged.err


@pytest.mark.parametrize(
    "headers",
    [[("X-A", "a\r\nSet-Cookie: x=1")], [("Transfer-Encoding", "chunked")], [("Bad Name", "v")]],
    ids=["crlf", "hop-by-hop", "bad-name"],
)
def test_bad_response_headers_are_the_apps_error(threads, headers):
    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b"hello"]

    status, sent_headers, body = call(app, threads)
    assert (status, body) == (500, [b"Internal Server Error"])
    assert "set-cookie" not in sent_headers and "transfer-encoding" not in sent_headers


def test_a_client_that_stops_reading_frees_the_thread(threads):
    closed = threading.Event()

    def app(environ, start_response):
        def forever() -> Iterator[bytes]:
            start_response("200 OK", [])
            try:
                while True:
                    yield b"x" * 1024
            finally:
                closed.set()

        return forever()

    started = time.monotonic()
    call(app, threads, send_timeout=0.2, stall_after=3)
    assert closed.is_set()  # the generator was closed, the thread is free
    assert time.monotonic() - started < 5


def test_one_thread_is_one_request_at_a_time_and_apps_may_use_asyncio():
    active: list[int] = []
    overlap = threading.Event()

    def app(environ, start_response):
        active.append(1)
        if len(active) > 1:
            overlap.set()

        async def inner() -> bytes:
            await asyncio.sleep(0.01)
            return b"from asyncio.run"

        try:
            body = asyncio.run(inner())  # e.g. asgiref's async_to_sync does this
        finally:
            active.pop()
        start_response("200 OK", [])
        return [body]

    sent = serve(app, 1, requests=4)
    assert not overlap.is_set()
    assert [m["body"] for m in sent if m["type"] == "http.response.body"] == [b"from asyncio.run"] * 4


def test_a_body_longer_than_its_content_length_is_cut_and_close_runs(threads):
    closed: list[str] = []

    class Body:
        def __init__(self, pieces: list[bytes]) -> None:
            self.pieces = pieces

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.pieces)

        def close(self) -> None:
            closed.append("closed")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "8")])
        if environ["PATH_INFO"] == "/list":
            return [b"0123", b"45", b"6789"]
        return Body([b"0123", b"45", b"6789", b"more"])

    status, headers, body = call(app, threads, scope("/list"))
    assert (status, headers["content-length"], body) == (200, "8", [b"01234567"])
    status, headers, body = call(app, threads, scope("/stream"))
    assert (headers["content-length"], b"".join(body)) == ("8", b"01234567")
    assert closed == ["closed"]  # iteration stopped at the length, and close() ran


@pytest.mark.parametrize("result", [[b"x"], [b""]], ids=["list", "only-empty-pieces"])
def test_close_runs_when_start_response_is_never_called(threads, result):
    closed = threading.Event()

    class Body(list):  # type: ignore[type-arg]
        def close(self) -> None:
            closed.set()

    def app(environ, start_response):
        return Body(result) if environ["PATH_INFO"] == "/list" else IterWithClose(Body(result), closed)

    for path in ("/list", "/iter"):
        closed.clear()
        status, _, body = call(app, threads, scope(path))
        assert (status, body) == (500, [b"Internal Server Error"])
        assert closed.is_set(), path


class IterWithClose:  # stands in for a framework's response object
    def __init__(self, items: list[bytes], closed: threading.Event) -> None:
        self.items, self.closed = items, closed

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.items)

    def close(self) -> None:
        self.closed.set()


def test_stalled_since_reports_only_when_every_thread_is_busy(threads):
    seen: list[float | None] = []
    bridge: WSGIBridge

    def app(environ, start_response):
        seen.append(bridge.stalled_since())
        start_response("200 OK", [])
        return [b""]

    bridge = WSGIBridge(app, threads=threads)

    async def one() -> None:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await bridge(scope(), no_body, send)

    try:
        before = time.monotonic()
        asyncio.run(one())
        assert bridge.stalled_since() is None  # idle again
    finally:
        bridge.shutdown()
    if threads == 1:
        assert seen[0] is not None and seen[0] >= before  # its one thread was busy since then
    else:
        assert seen == [None]  # three threads to spare


def test_a_client_gone_while_the_body_is_unread_ends_the_stream(threads):
    """The protocol's "lost" future says so, whatever the body's state."""
    closed = threading.Event()
    pieces = 0

    def app(environ, start_response):
        def forever() -> Iterator[bytes]:
            nonlocal pieces
            start_response("200 OK", [])
            try:
                while True:
                    pieces += 1
                    yield b"tick"
            finally:
                closed.set()

        return forever()

    async def serve_one() -> None:
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:  # the body is never finished
            return {"type": "http.request", "body": b"x" * 100, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if len(sent) == 5 and not lost.done():
                lost.set_result(None)

        s = scope(method="POST", extensions={"supervise.connection_lost": lost})
        await bridge(s, receive, send)

    bridge = WSGIBridge(app, threads=threads)
    try:
        asyncio.run(serve_one())
    finally:
        bridge.shutdown()
    assert closed.is_set() and pieces <= 6


def test_continue_is_sent_on_the_first_read_only(threads):
    continued: list[int] = []
    got: list[bytes] = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/read":
            got.append(environ["wsgi.input"].read())
            start_response("200 OK", [])
            return [b"read"]
        start_response("413 Content Too Large", [])
        return [b"no"]

    async def receive() -> dict[str, Any]:
        assert continued, "the body was asked for before 100 Continue"
        return {"type": "http.request", "body": b"body", "more_body": False}

    for path in ("/refuse", "/read"):
        continued.clear()
        s = scope(path, method="POST", extensions={"supervise.send_continue": lambda: continued.append(1)})
        sent = serve(app, threads, receive, s)
        headers = dict(sent[0]["headers"])
        if path == "/refuse":
            assert continued == [] and headers[b"connection"] == b"close"  # the body never came
        else:
            assert continued == [1] and b"connection" not in headers and got == [b"body"]


def test_file_wrapper_without_zero_copy_iterates_with_a_length(threads, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 100_000)

    def app(environ, start_response):
        f = path.open("rb")
        f.seek(3)
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f, 4096)

    _, headers, body = call(app, threads)
    assert headers["content-length"] == str(300_000 - 3)
    assert b"".join(body) == (b"abc" * 100_000)[3:]


def test_repeated_headers_fold_in_linear_time():
    from supervisor.http.wsgi_request import _environ

    headers = [(b"x-repeat", b"0123456789")] * 200_000
    started = time.monotonic()
    environ = _environ(scope(headers=headers), None, multithread=False)  # type: ignore[arg-type]
    assert time.monotonic() - started < 1  # adding to one string each time is quadratic: far longer
    assert environ["HTTP_X_REPEAT"] == ",".join(["0123456789"] * 200_000)


def test_the_auto_target_times_a_thread_from_its_start_not_from_its_queue(monkeypatch):
    """Four permits per thread: three requests wait in the executor's queue.
    That wait is queue time; the hold the auto target follows is the thread's
    own (here 50 ms), not 50 ms more for each request ahead."""
    from supervisor.worker import admission

    monkeypatch.setattr(admission, "HOLD_EVERY", 1)  # keep every hold, not one in eight
    gate = admission.Admission(admission.QueuePolicy(), admission.Tally()).gate(4)

    def app(environ, start_response):
        time.sleep(0.05)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    bridge = WSGIBridge(app, threads=1, gate=gate)

    async def requests() -> None:
        await asyncio.gather(*(bridge(scope(), no_body, send) for _ in range(8)))

    try:
        asyncio.run(requests())
    finally:
        bridge.shutdown()
    holds = list(gate.codel._holds)
    assert len(holds) == 8 and all(m.get("status", 200) == 200 for m in sent)
    assert max(holds) < 0.12, holds  # from submit, the fourth in line would read 0.2 s
