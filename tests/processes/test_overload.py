"""Past capacity (issue 17), over real sockets against a real PostgreSQL, on
the ASGI and WSGI paths: no work for a client that left, a query cancelled in
PostgreSQL when its request ends, a deadline answered at once, and shedding
that starts under overload and stops when it ends.

The app (tests/apps/slowdb.py) records each request's tag in the table
``ran`` before it sleeps in PostgreSQL: a tag there proves its app reached
the database. One connection (ASGI) or one request thread (WSGI) makes the
worker's capacity one request at a time, so a second request must queue.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from test_control import status

from conftest import RawConnection, RawResponse, Run, free_port, wait_until

TARGETS = {"asgi": "slowdb:app", "wsgi": "slowdb:wsgi"}


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(supervise, url: str, kind: str, *extra: str) -> tuple[Run, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table if not exists ran (tag text, at timestamptz default now())")
    port = free_port()
    capacity_of_one = ["--pool-max-size", "1", "--pool-min-size", "1", "--threads", "1"]
    run = supervise(
        TARGETS[kind],
        "-w",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        *capacity_of_one,
        *extra,
        env={"DATABASE_URL": url},
    )
    run.wait_ready(1)
    return run, port


def send(port: int, path: str, *headers: str) -> RawConnection:
    """A request sent; the caller reads the answer and closes the connection."""
    conn = RawConnection(port, timeout=10)
    extra = "".join(f"{h}\r\n" for h in headers)
    conn.send(f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())
    return conn


def get(port: int, path: str, *headers: str) -> RawResponse:
    conn = send(port, path, *headers)
    try:
        return conn.read_response()
    finally:
        conn.close()


def answer(conn: RawConnection) -> RawResponse:
    try:
        return conn.read_response()
    finally:
        conn.close()


def tags(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [row[0] for row in conn.execute("select tag from ran order by at")]


def running_sleeps(url: str) -> list[int]:
    """Backends of the test database running a pg_sleep now."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as conn:
        return [
            pid
            for (pid,) in conn.execute(
                "select pid from pg_stat_activity where datname = %s and state = 'active' "
                "and query like 'select pg_sleep%%' and pid <> pg_backend_pid()",
                (dbname,),
            )
        ]


def load(cwd: Path) -> dict:
    """What ``supervise status --json`` shows of the one worker's requests."""
    return status(cwd)["workers"][0]["load"]


def test_a_client_that_leaves_while_queued_never_runs(supervise, postgres_url, kind, tmp_path):
    _, port = start(supervise, postgres_url, kind)
    busy = send(port, "/?tag=busy&sleep=1")
    assert wait_until(lambda: running_sleeps(postgres_url), timeout=10)
    gone = send(port, "/?tag=gone&sleep=0")  # queued behind "busy": no connection, no thread free
    time.sleep(0.2)  # it is read and queued (not a synchronisation: any delay shows the same)
    gone.close()
    assert answer(busy).status == 200
    assert get(port, "/?tag=after&sleep=0").status == 200  # "busy" ended: "gone" would have run before this
    assert tags(postgres_url) == ["busy", "after"], "the app ran for a client that had left"
    assert wait_until(lambda: load(tmp_path)["left_queued"] == 1, timeout=10)


def test_a_client_that_leaves_mid_query_has_its_query_cancelled(supervise, postgres_url, kind, tmp_path):
    _, port = start(supervise, postgres_url, kind)
    slow = send(port, "/?tag=slow&sleep=30")
    assert wait_until(lambda: running_sleeps(postgres_url), timeout=10)
    (backend,) = running_sleeps(postgres_url)
    slow.close()
    left = time.monotonic()
    assert wait_until(lambda: not running_sleeps(postgres_url), timeout=5)
    gone_in = time.monotonic() - left
    assert gone_in < 0.1, f"the query ran {gone_in:.3f} s after its client left"
    reused = get(port, "/?tag=next&sleep=0")
    assert reused.status == 200 and f"backend={backend}".encode() in reused.body, (
        "the connection was not reused"
    )
    counts = load(tmp_path)
    assert counts["left_running"] == 1 and counts["cancelled"] == 1


def test_a_deadline_answers_504_at_once_and_cancels_the_query(supervise, postgres_url, kind, tmp_path):
    _, port = start(supervise, postgres_url, kind, "--request-timeout", "0.5")
    began = time.monotonic()
    late = get(port, "/?tag=late&sleep=5")
    took = time.monotonic() - began
    assert late.status == 504 and took < 0.5 + 0.1 + 0.2, took  # + connection set-up on a loaded machine
    assert wait_until(lambda: not running_sleeps(postgres_url), timeout=1), "still running"
    assert get(port, "/?tag=ok&sleep=0").status == 200
    counts = load(tmp_path)
    assert counts["expired"] == 1 and counts["cancelled"] == 1


def test_shedding_starts_under_overload_and_stops_when_it_ends(supervise, postgres_url, kind, tmp_path):
    _, port = start(supervise, postgres_url, kind, "--queue-target", "0.01", "--retry-after", "2")
    answers: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        r = get(port, f"/?tag=burst{i}&sleep=0.05")
        with lock:
            answers.append((r.status, r.headers.get("retry-after")))

    # 40 requests of 50 ms each at once, for a capacity of one at a time: 2 s of work queued
    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    refused = [a for a in answers if a[0] == 503]
    assert len(answers) == 40 and refused, f"no request was refused: {answers}"
    assert all(retry == "2" for _, retry in refused)
    served = [a for a in answers if a[0] == 200]
    assert served, "overload refused everything"
    assert len(tags(postgres_url)) == len(served), "a refused request reached the database"
    # the spike is over: one request at a time, each is served
    for i in range(10):
        assert get(port, f"/?tag=calm{i}&sleep=0").status == 200
    assert wait_until(lambda: not load(tmp_path)["overloaded"], timeout=5)


def test_a_proxys_request_start_counts_only_from_a_trusted_proxy(supervise, postgres_url, tmp_path):
    _, port = start(supervise, postgres_url, "asgi", "--request-timeout", "1")

    def started(stamp: str) -> int:
        return get(port, "/plain", f"X-Request-Start: {stamp}").status

    assert started("t=yesterday") == 200  # malformed: ignored, counted, never a 500
    assert wait_until(lambda: load(tmp_path)["bad_request_start"] == 1, timeout=10)
    three_s_ago = f"t={int((time.time() - 3) * 1e6)}"  # Apache's form (µs); the proxy queued it 3 s
    assert started(three_s_ago) == 504  # past its 1 s deadline before it reached the worker: not run
    assert load(tmp_path)["expired"] == 1


def test_a_request_start_from_an_untrusted_address_is_ignored(supervise, postgres_url, tmp_path):
    _, port = start(
        supervise, postgres_url, "asgi", "--request-timeout", "1", "--forwarded-allow-ips", "10.9.9.9"
    )
    stamp = int((time.time() - 3) * 1e6)
    # loopback is not a trusted proxy here: its claim is not even read
    assert get(port, "/plain", f"X-Request-Start: t={stamp}").status == 200
    assert load(tmp_path)["expired"] == 0 and load(tmp_path)["bad_request_start"] == 0
