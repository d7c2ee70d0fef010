"""The request budget where it meets what users' machines do (real processes,
a real PostgreSQL): a proxy whose clock is behind ours, a client that uploads
slowly, a WSGI request thread that outlives its request. Each was a way for
the overload protection to hurt a healthy service."""

from __future__ import annotations

import time

import psycopg
import pytest
from test_overload import get, send, start

from conftest import RawConnection, free_port, wait_until


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_proxy_clock_behind_ours_refuses_nothing(supervise, postgres_url, kind):
    """Its X-Request-Start is 80 ms old on arrival: that counts toward the
    deadline, not as a wait in this worker's queue (which would be a
    standing backlog four targets long, and every request refused)."""
    _, port = start(supervise, postgres_url, kind, "--queue-target", "0.02")
    statuses = []
    began = time.monotonic()
    while time.monotonic() - began < 1.5:  # several CoDel intervals, at a light load
        stamp = f"t={time.time() - 0.08:.6f}"
        statuses.append(get(port, "/?tag=skew&sleep=0", f"X-Request-Start: {stamp}").status)
    assert len(statuses) > 10 and set(statuses) == {200}, statuses


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_slow_upload_is_not_a_slow_server(supervise, postgres_url, kind):
    """1.5 s of request body at a 1 s deadline: the client's time, not a 504."""
    _, port = start(supervise, postgres_url, kind, "--request-timeout", "1")
    conn = RawConnection(port, timeout=10)
    try:
        pieces = 6
        conn.send(
            f"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {pieces * 100}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        for _ in range(pieces):
            time.sleep(0.25)  # the client's pace, the point of the test
            conn.send(b"x" * 100)
        answer = conn.read_response()
    finally:
        conn.close()
    assert answer.status == 200 and answer.body.startswith(b"got 600"), answer


def test_an_app_listening_for_the_disconnect_still_meets_its_deadline(supervise, postgres_url):
    """Django 5 and Quart keep a receive() pending beside the view for the whole
    request: that wait is not the client's body, and must not stop the clock."""
    _, port = start(supervise, postgres_url, "asgi", "--request-timeout", "1")
    began = time.monotonic()
    answer = get(port, "/listening?tag=listening&sleep=5")
    took = time.monotonic() - began
    assert answer.status == 504 and took < 3, (answer, took)

    def sleeping() -> int:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from pg_stat_activity"
                " where query like 'select pg_sleep%' and state = 'active'"
            ).fetchone()
        assert row is not None
        return int(row[0])

    # the query of a request past its deadline is cancelled (well before its 5 s)
    wait_until(lambda: sleeping() == 0, timeout=2, what="the query cancelled")


def test_a_streaming_response_outlives_its_deadline(supervise, postgres_url):
    """The deadline covers the time to the first byte: 4 batches of 0.4 s, one
    checkout each, at a 1 s deadline, all arrive (no batch refused its
    connection once the response has started)."""
    _, port = start(supervise, postgres_url, "wsgi", "--request-timeout", "1")
    answer = get(port, "/stream?sleep=0.4")
    assert answer.status == 200, answer
    assert answer.body == b"".join(f"batch {i}\n".encode() for i in range(4)), answer


def wsgi_sleeper(supervise, *extra: str, sleep_s: float = 3):
    port = free_port()
    run = supervise(
        "wsgipid:app",
        "-w",
        "1",
        "--threads",
        "2",
        "--timeout",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        *extra,
        env={"SLEEP_S": str(sleep_s)},
    )
    run.wait_ready(1)
    return run, port


def test_a_wsgi_thread_whose_client_left_runs_on_without_a_recycle(supervise):
    run, port = wsgi_sleeper(supervise, sleep_s=6)  # longer than any grace: a recycle would show
    gone = RawConnection(port)
    gone.send(b"GET /sleep HTTP/1.1\r\nHost: test\r\n\r\n")
    run.wait_event("request sleeping")
    gone.close()  # it gives up; the thread sleeps on, as under any sync server
    run.wait_event("request slept", timeout=15)
    assert not run.find("request thread still busy after its request timed out; replacing the worker")
    assert not run.find("recycling worker")


def test_a_wsgi_thread_busy_past_its_deadline_gets_its_worker_replaced(supervise):
    run, port = wsgi_sleeper(supervise, "--request-timeout", "0.5")
    first = run.ready_pids()[1]
    late = send(port, "/sleep")
    try:
        assert late.read_response().status == 504
    finally:
        late.close()
    (stuck,) = run.wait_event(
        "request thread still busy after its request timed out; replacing the worker", timeout=10
    )
    assert "time.sleep" in stuck["stack"] or "sleep" in stuck["stack"]
    run.wait_event("worker exited", worker_pid=first, timeout=15)
    assert run.wait_ready(2)[1] != first
