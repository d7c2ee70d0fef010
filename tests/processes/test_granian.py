"""``--http granian``: granian's Rust HTTP stack in each of our workers, on the
master's sockets, with the guarantees of the default engine.

The cases whose body is the default engine's run under both engines in
test_http.py (parametrized by ``engine``): a blocked event loop, a failed
lifespan startup, --max-requests, a silent connection on a retiring worker and
each worker's own pool. Here are the cases granian checks its own way (its
``server`` header, the sync point of a graceful stop, the wait for the load to
move after a HUP, every WSGI thread stuck) and its version check."""

from __future__ import annotations

import contextlib
import http.client
import signal
import threading
import time

import pytest
from test_http import get, keep_alive_load

from conftest import free_port, wait_until

pytest.importorskip("granian")

GRANIAN = ("--http", "granian")


@pytest.mark.parametrize(
    ("target", "body_end"), [("asgiapp:app", "lifespan=True"), ("wsgipid:app", "")], ids=["asgi", "wsgi"]
)
def test_every_worker_answers_on_the_masters_socket(supervise, target, body_end):
    port = free_port()
    run = supervise(target, "-w", "2", *GRANIAN, "--bind", f"127.0.0.1:{port}")
    pids = set(run.wait_ready(2).values())
    seen: set[str] = set()

    def hit() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        assert response.status == 200 and body.endswith(body_end)
        assert response.getheader("server") == "granian"  # not uvicorn
        seen.add(body.split()[0])
        return seen == {f"pid={p}" for p in pids}

    wait_until(hit, 10, "both workers to answer")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


@pytest.mark.parametrize(
    ("target", "body_end"), [("asgiapp:app", " lifespan=True"), ("wsgipid:app", "")], ids=["asgi", "wsgi"]
)
def test_graceful_stop_finishes_the_request_in_flight(supervise, target, body_end):
    port = free_port()
    run = supervise(target, "-w", "1", *GRANIAN, "--bind", f"127.0.0.1:{port}", env={"SLEEP_S": "1.5"})
    run.wait_ready(1)
    result: dict[str, object] = {}

    def slow_request() -> None:
        try:
            result["r"] = get(port, "/sleep")
        except OSError as exc:
            result["r"] = exc

    slow = threading.Thread(target=slow_request)
    slow.start()
    run.wait_event("request sleeping")
    run.signal(signal.SIGTERM)
    run.wait_event("stopping gracefully")

    def refused() -> bool:
        try:
            get(port, timeout=1)
        except ConnectionRefusedError:
            return True
        except (ConnectionResetError, TimeoutError):
            return False  # landed in a backlog in the very instant it closed
        return False

    wait_until(refused, 3, "new connections to be refused")
    slow.join(10)
    assert result["r"] == (200, f"pid={run.ready_pids()[1]}{body_end}")
    assert run.wait() == 0


@pytest.mark.parametrize("target", ["asgiapp:app", "wsgipid:app"], ids=["asgi", "wsgi"])
def test_hup_under_keep_alive_load_fails_no_request(supervise, target):
    port = free_port()
    run = supervise(target, "-w", "2", *GRANIAN, "--bind", f"127.0.0.1:{port}")
    old = run.wait_ready(2)
    with keep_alive_load(port, clients=8) as results:
        wait_until(lambda: len(results) > 200, 10, "load to start")
        run.signal(signal.SIGHUP)
        run.wait_event("reload complete", timeout=30)
        run.wait_event("worker exited", count=2, reason="reload", timeout=30)
        old_pids = {f"pid={p}" for p in old.values()}
        after_reload = len(results)

        def only_new_workers_answer() -> bool:
            # which new worker holds which keep-alive connection is the kernel's choice
            recent = {b.split()[0] for s, b in results[-50:] if s == "ok"}
            return len(results) > after_reload + 200 and bool(recent) and not recent & old_pids

        wait_until(only_new_workers_answer, 10, "the new workers to serve the load")
    failures = [r for r in results if r[0] != "ok"]
    assert failures == [], failures[:5]
    assert len(results) > 400
    assert not run.find("did not stop in time; exiting")  # retired by the clients leaving, not a deadline
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_wsgi_worker_with_every_thread_stuck_is_replaced(supervise):
    port = free_port()
    run = supervise(
        "wsgipid:app",
        "-w",
        "1",
        *GRANIAN,
        "--threads",
        "2",
        "--timeout",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        env={"SLEEP_S": "60"},
    )
    first = run.wait_ready(1)[1]
    threading.Thread(target=_request, args=(port, "/sleep"), daemon=True).start()
    run.wait_event("request sleeping")
    time.sleep(2)  # one thread of two busy past --timeout: the worker still makes progress
    assert get(port)[0] == 200
    assert not run.find("worker stuck; dumping its stacks to stderr, then killing it")
    threading.Thread(target=_request, args=(port, "/sleep"), daemon=True).start()
    stuck = run.wait_event("worker stuck; dumping its stacks to stderr, then killing it", timeout=15)[0]
    assert stuck["worker_pid"] == first
    run.wait_event("worker ready", count=2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_wsgi_on_two_sockets_serves_every_thread_of_each(supervise):
    """granian runs --threads request threads per socket: a request on the
    second socket while the first is busy is served, never refused as overload."""
    ports = free_port(), free_port()
    run = supervise(
        "wsgipid:app",
        "-w",
        "1",
        *GRANIAN,
        "--threads",
        "2",
        "--bind",
        f"127.0.0.1:{ports[0]}",
        "--bind",
        f"127.0.0.1:{ports[1]}",
        env={"SLEEP_S": "1"},
    )
    run.wait_ready(1)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(port: int) -> None:
        status = get(port, "/sleep", timeout=20)[0]
        with lock:
            statuses.append(status)

    clients = [threading.Thread(target=one, args=(port,)) for port in ports for _ in range(3)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(30)
    assert statuses == [200] * 6, statuses
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def _request(port: int, path: str) -> None:
    with contextlib.suppress(OSError):  # its worker is killed mid-request
        get(port, path, timeout=70)


def test_an_untested_granian_is_refused_in_one_line(supervise, tmp_path):
    # a stand-in package ahead of the real one on the path: the check reads its version
    fake = tmp_path / "fake" / "granian"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "3.0.0"\n')
    (fake / "_granian.py").write_text("")
    from conftest import APPS

    run = supervise(
        "asgiapp:app",
        *GRANIAN,
        "--bind",
        f"127.0.0.1:{free_port()}",
        env={"PYTHONPATH": f"{fake.parent}:{APPS}"},
    )
    assert run.wait() == 2
    assert run.final(2) == (
        "--http granian was tested with granian>=2.8,<2.9, not granian 3.0.0: "
        "pip install 'pg-supervise[granian]'"
    )
    assert "Traceback" not in run.output()
    assert not run.find("worker spawned")
