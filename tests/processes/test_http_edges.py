"""HTTP edge cases over real sockets against a running ``supervise``: clients
that leave, stuck request threads, framing (Content-Length, HTTP/1.0, 304,
100-continue), the request-head limits, the root path and wsgi.file_wrapper.

Checked by hand against gunicorn 27 (gthread, the same wsgi_edge app): it
gives the same 414 and 431s for the head limits, the same 8-byte cut of a body
longer than its Content-Length, keeps a 304's Content-Length and answers 500
to an app that skips start_response. It sends "100 Continue" before the app
runs, which is what these tests assert against."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import RawConnection, Run, free_port, wait_until

Start = Callable[..., tuple[Run, int]]


@pytest.fixture
def serve(supervise: Callable[..., Run]) -> Start:
    """Start ``target`` (wsgi_edge:app by default) on a free port, one worker, ready."""

    def start(
        *args: str, target: str = "wsgi_edge:app", env: dict[str, str] | None = None
    ) -> tuple[Run, int]:
        port = free_port()
        run = supervise(target, "-w", "1", "--bind", f"127.0.0.1:{port}", *args, env=env)
        run.wait_ready(1)
        return run, port

    return start


def request(
    port: int, raw: bytes, head_request: bool = False
) -> tuple[RawConnection, int, dict[str, str], bytes]:
    conn = RawConnection(port)
    conn.send(raw)
    response = conn.read_response(head_request)
    return conn, response.status, response.headers, response.body


def stop(run: Run) -> None:
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def _closed_after(run: Run) -> int:
    found = wait_until(
        lambda: [e for e in run.events if str(e.get("event", "")).startswith("stream closed after")],
        5,
        "the stream to be closed",
    )
    return int(found[0]["event"].split()[-2])


@pytest.mark.parametrize(
    "body_state",
    ["ignored", "partly-sent", "partly-read"],
)
def test_a_client_that_leaves_ends_the_stream_whatever_its_body_state(serve, body_state):
    """gunicorn closes the app's iterator within 0.1 s; the bridge used to go on
    for hundreds of pieces when the request body was not finished."""
    run, port = serve("--threads", "1")
    declared, sent, path = {
        "ignored": (200_000, 200_000, "/stream"),  # the app never reads it
        "partly-sent": (200_000, 1_000, "/stream"),  # the client sends 1 kB of 200 kB, then leaves
        "partly-read": (1_000_000, 1_000_000, "/stream?read=1000"),  # the app reads 1 kB of 1 MB
    }[body_state]
    conn = RawConnection(port)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode()
    if body_state == "partly-sent":
        conn.send(head + b"x" * sent)
    else:
        # the body goes in from a thread: the server may not read all of it
        import threading

        threading.Thread(target=lambda: _send_quietly(conn.sock, head + b"x" * sent), daemon=True).start()
    wait_until(lambda: conn.buf.count(b"piece") >= 4 or conn._fill(), 5, "four pieces")
    received = conn.buf.count(b"piece")
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    left = time.monotonic()
    pieces = _closed_after(run)
    closed_in = run.find(f"stream closed after {pieces} pieces")[0]["_t"] - left
    # a piece every 10 ms: a few more pieces go out before a write fails
    assert pieces - received < 60, (pieces, received)
    assert closed_in < 1.0
    assert run.wait_event("worker ready") and get_ok(port)
    stop(run)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the test closed it
        sock.sendall(data)


def get_ok(port: int) -> bool:
    conn, status, _, body = request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.close()
    return status == 200 and body == b"ok"


def test_stuck_request_threads_get_the_worker_replaced(serve):
    """The event loop beats on while every request thread is stuck: the worker
    must still count as hung (gunicorn's sync worker is killed at --timeout)."""
    run, port = serve("--threads", "2", "--timeout", "1.5")
    first = run.ready_pids()[1]
    hung = [RawConnection(port, timeout=30)]
    hung[0].send(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    run.wait_event("hanging")
    # one thread of two stuck: capacity left, nothing to do
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert get_ok(port)
        time.sleep(0.2)
    assert not run.find("worker stuck; dumping its stacks to stderr, then killing it")
    hung.append(RawConnection(port, timeout=30))
    hung[1].send(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    stuck = run.wait_event("worker stuck; dumping its stacks to stderr, then killing it", timeout=15)[0]
    assert stuck["worker_pid"] == first
    wait_until(lambda: 'wsgi_edge.py", line' in run.output(), 5, "the stuck thread's stack in the log")
    run.wait_event("worker ready", count=2, timeout=15)
    assert get_ok(port)
    for conn in hung:
        conn.close()
    stop(run)


def test_a_response_longer_than_its_content_length_is_cut_to_it(serve):
    run, port = serve()
    conn = RawConnection(port)
    for path in ("/long", "/long?gen=1", "/long"):  # a list, a generator; same connection
        conn.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = conn.read_response()
        assert (response.status, response.headers["content-length"], response.body) == (200, "8", b"01234567")
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # nothing extra was left on the wire
    assert conn.read_response().body == b"ok"
    conn.close()
    said = "the WSGI app sent more than its Content-Length; the rest is dropped (said once per worker)"
    wait_until(lambda: run.find(said), 10, "the warning")  # the log may arrive after the response
    stop(run)
    assert len(run.find(said)) == 1


def test_close_runs_when_the_app_never_calls_start_response(serve):
    run, port = serve()
    conn, status, _, body = request(port, b"GET /nostart HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.close()
    assert (status, body) == (500, b"Internal Server Error")
    run.wait_event("closed nostart")
    stop(run)


@pytest.mark.parametrize("how", ["option", "SCRIPT_NAME"])
def test_root_path_for_wsgi_and_asgi(serve, how):
    args, env = (("--root-path", "/app"), None) if how == "option" else ((), {"SCRIPT_NAME": "/app"})
    run, port = serve(*args, env=env)
    for path, expected in [("/app/where", b"/app|/where"), ("/where", b"/app|/where"), ("/app/", b"ok")]:
        conn, status, _, body = request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conn.close()
        assert (status, body) == (200, expected), path
    stop(run)
    run, port = serve(*args, env=env, target="asgiapp:app")
    for path in ("/app/where", "/where"):  # a proxy that keeps the prefix, one that strips it
        conn, status, _, body = request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conn.close()
        assert (status, body) == (200, b"/app|/app/where"), path
    stop(run)


def test_a_bad_root_path_is_one_line_and_exit_2(supervise):
    run = supervise("wsgi_edge:app", "--root-path", "app/")
    assert run.wait() == 2
    assert "root_path: expected a URL path such as /app, got 'app/'" in run.output()
    assert "Traceback" not in run.output()


def test_100_continue_only_when_the_app_reads(serve):
    run, port = serve()
    # an upload the app refuses by its length: no 100, so the client never sends the body
    conn = RawConnection(port)
    conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 50000000\r\n\r\n")
    response = conn.read_response()
    assert (response.status, response.body) == (413, b"too large")
    assert response.headers["connection"] == "close"  # the announced body never came
    assert conn.closed_by_server()
    conn.close()
    # an upload the app reads: 100 first, then the answer
    conn = RawConnection(port)
    conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n")
    assert conn.read_response().status == 100
    conn.send(b"y" * 100)
    response = conn.read_response()
    assert (response.status, response.body) == (200, b"got 100")
    conn.close()
    stop(run)


@pytest.mark.parametrize("target", ["wsgi_full:app", "asgiapp:app"])
def test_http10_gets_no_chunked_coding_and_keep_alive_when_asked(serve, target):
    run, port = serve(target=target)
    path = "/stream" if target.startswith("wsgi") else "/chunks"
    conn, status, headers, body = request(port, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    assert status == 200 and "transfer-encoding" not in headers and "content-length" not in headers
    assert body == (b"piece 0\npiece 1\npiece 2\n" if target.startswith("wsgi") else b"one,two")
    assert conn.closed_by_server()  # the close ends the body
    conn.close()
    # 1.1 still streams chunked
    conn, _, headers, body = request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert headers["transfer-encoding"] == "chunked"
    conn.close()
    # keep-alive when the 1.0 client asks, and the response has a length
    conn = RawConnection(port)
    for _ in range(2):
        conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200 and response.headers["connection"] == "keep-alive"
    conn.send(b"GET / HTTP/1.0\r\n\r\n")  # without asking: closed after the answer
    assert conn.read_response().status == 200
    assert conn.closed_by_server()
    conn.close()
    stop(run)


@pytest.mark.parametrize("target", ["wsgi_edge:app", "asgiapp:app"])
def test_304_keeps_the_apps_content_length(serve, target):
    run, port = serve(target=target)
    conn = RawConnection(port)
    for _ in range(2):  # and the connection stays usable
        conn.send(b"GET /not-modified HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.read_response()
        assert (response.status, response.headers["content-length"], response.body) == (304, "5", b"")
    conn.close()
    stop(run)


def test_request_head_limits(serve):
    run, port = serve()
    cases = [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
    ]
    for raw, expected in cases:
        conn, status, headers, _ = request(port, raw)
        assert status == expected and headers["connection"] == "close"
        assert conn.closed_by_server()
        conn.close()
    # at the limits: served
    conn, status, _, _ = request(
        port, b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(99)) + b"Host: x\r\n\r\n"
    )
    assert status == 200
    conn.close()
    # a 16 MB header is refused as it arrives, not stored whole first
    conn = RawConnection(port)
    conn.send(b"GET / HTTP/1.1\r\nX-Huge: ")
    started = time.monotonic()
    try:
        for _ in range(16 * 16):
            conn.send(b"v" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert time.monotonic() - started < 10
    assert conn.closed_by_server()
    conn.close()
    assert get_ok(port)
    stop(run)


def test_repeated_headers_fold_in_linear_time(serve):
    """100k repeats of one header (2 MB) blocked the loop for seconds when the
    values were joined by adding strings; with the limits off it must be quick."""
    run, port = serve("--limit-request-fields", "0", "--limit-request-field-size", "0")
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Repeat: 0123456789\r\n" * 100_000 + b"\r\n"
    started = time.monotonic()
    conn, status, _, _ = request(port, head)
    conn.close()
    assert status == 200
    assert time.monotonic() - started < 5  # quadratic joining took 1.5-3 s on an idle machine, more loaded
    stop(run)


def test_a_slow_request_head_gets_408_and_a_silent_connection_is_closed(serve):
    run, port = serve("--header-timeout", "1")
    slow = RawConnection(port)
    silent = RawConnection(port)
    started = time.monotonic()
    slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    response = slow.read_response()
    assert response.status == 408 and response.headers["connection"] == "close"
    assert slow.closed_by_server()
    assert silent.closed_by_server()
    assert silent.buf == b""  # nothing said to a client that said nothing
    assert time.monotonic() - started < 8
    slow.close()
    silent.close()
    # a whole head in time, then a slow keep-alive client is only subject to the keep-alive timeout
    assert get_ok(port)
    stop(run)


def test_file_wrapper_sends_a_file_whole(serve, tmp_path: Path):
    data = os.urandom(1 << 20) * 20  # 20 MB
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    run, port = serve()
    conn = RawConnection(port, timeout=30)
    conn.send(f"GET /file?path={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    response = conn.read_response()
    assert response.headers["content-length"] == str(len(data))
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(data).digest()
    conn.send(f"HEAD /file?path={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # same connection
    response = conn.read_response(head_request=True)
    assert response.headers["content-length"] == str(len(data))
    conn.send(f"GET /file?path={path} HTTP/1.0\r\n\r\n".encode())
    assert conn.read_response().body == data
    conn.close()
    assert not re.search(r"Traceback", run.output())
    stop(run)


def test_a_held_head_goes_out_without_its_body_and_head_requests_keep_the_connection(serve):
    """The head of a response waits for its first body bytes only within one
    turn of the event loop: a stream that starts later shows its head at once,
    and a HEAD answer (no body write at all) is not stuck behind nothing."""
    run, port = serve(target="asgiapp:app", env={"LATE_S": "4"})
    conn = RawConnection(port, timeout=20)
    conn.send(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    while b"\r\n\r\n" not in conn.buf:
        conn._fill()
    assert conn.buf.startswith(b"HTTP/1.1 200 ")
    assert b"late" not in conn.buf  # the head came alone: it did not wait 4 s for the body
    assert conn.read_response().body == b"late"
    conn.close()
    conn = RawConnection(port, timeout=10)
    for _ in range(3):  # keep-alive: each HEAD answer is whole, and the next request is served
        conn.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.read_response(head_request=True)
        assert response.status == 200 and int(response.headers["content-length"]) > 0
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.read_response().body.startswith(b"pid=")
    conn.close()
    stop(run)
