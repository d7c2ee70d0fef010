"""ASGI and WSGI apps served inside each worker, on sockets the master bound, by
the default HTTP engine (uvicorn). The tests parametrized by ``engine`` run the
same body under ``--http granian`` too; granian's own cases are test_granian.py."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.util
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import alive, free_port, wait_until

NEEDS_GRANIAN = pytest.mark.skipif(
    importlib.util.find_spec("granian") is None, reason="--http granian needs the granian package"
)
ENGINES = ["uvicorn", pytest.param("granian", marks=NEEDS_GRANIAN)]


def http_engine(engine: str) -> tuple[str, ...]:
    """The options that pick ``engine``: none for the default, uvicorn."""
    return () if engine == "uvicorn" else ("--http", engine)


def get(port: int, path: str = "/", timeout: float = 5) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@contextlib.contextmanager
def keep_alive_load(port: int, clients: int, keep_alive: bool = True) -> Iterator[list[tuple[str, str]]]:
    """``clients`` threads, each reusing one keep-alive connection for ``GET /``
    (or a new connection for each request) until the block ends. Yields the
    results as they come: ("ok", body), ("bad-status", body) or ("error",
    repr of the exception)."""
    stop = threading.Event()
    results: list[tuple[str, str]] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while not stop.is_set():
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode()
                results.append(("ok" if response.status == 200 else "bad-status", body))
            except Exception as exc:  # any socket error is a failed request
                results.append(("error", repr(exc)))
                conn.close()
            if not keep_alive:
                conn.close()  # the next request connects again
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield results
    finally:
        stop.set()
        for t in threads:
            t.join(10)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def test_serves_on_tcp_from_every_worker_with_lifespan(supervise):
    port = free_port()
    run = supervise("asgiapp:app", "-w", "2", "--bind", f"127.0.0.1:{port}")
    pids = set(run.wait_ready(2).values())
    assert run.find("listening")[0]["on"] == [f"http://127.0.0.1:{port}"]
    seen: set[str] = set()

    def hit() -> bool:
        status, body = get(port)
        assert status == 200 and body.endswith("lifespan=True")
        seen.add(body.split()[0])
        return seen == {f"pid={p}" for p in pids}

    wait_until(hit, 10, "both workers to answer")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_keep_alive_requests_are_not_delayed(supervise):
    port = free_port()
    run = supervise("asgiapp:app", "-w", "1", "--bind", f"127.0.0.1:{port}")
    run.wait_ready(1)
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(20):  # keep-alive: without TCP_NODELAY each would wait ~40 ms
        conn.request("GET", "/")
        conn.getresponse().read()
    conn.close()
    assert time.monotonic() - started < 0.5
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_unix_socket_with_mode_and_a_stale_file(supervise, tmp_path: Path):
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file left behind by a crashed server
    run = supervise("asgiapp:app", "-w", "1", "--bind", f"unix:{path}", "--socket-mode", "600")
    run.wait_ready(1)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    conn = UnixHTTPConnection(str(path))
    conn.request("GET", "/")
    assert conn.getresponse().status == 200
    conn.close()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert not path.exists()  # removed on exit


def test_fd_inheritance(supervise):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    run = supervise("asgiapp:app", "-w", "1", "--bind", f"fd://{fd}", pass_fds=(fd,))
    sock.close()  # only the supervisor holds it now
    run.wait_ready(1)
    assert get(port)[0] == 200
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_port_in_use_exits_2_with_one_line(supervise):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        run = supervise("asgiapp:app", "--bind", f"127.0.0.1:{port}")
        assert run.wait() == 2
        assert run.final(2) == f"cannot listen on 127.0.0.1:{port}: address already in use"
        assert "Traceback" not in run.output()


def test_graceful_stop_finishes_in_flight_and_refuses_new_clients(supervise):
    port = free_port()
    run = supervise("asgiapp:app", "-w", "1", "--bind", f"127.0.0.1:{port}", env={"SLEEP_S": "1.5"})
    run.wait_ready(1)
    result: dict[str, object] = {}

    def slow_request() -> None:
        try:
            result["r"] = get(port, "/sleep")
        except OSError as exc:
            result["r"] = exc

    slow = threading.Thread(target=slow_request)
    slow.start()
    time.sleep(0.3)  # let the request reach the worker (a fixed lead, not a sync point)
    run.signal(signal.SIGTERM)
    run.wait_event("stopping gracefully")

    def refused() -> bool:
        try:
            get(port, timeout=1)
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            return False  # landed in a backlog in the very instant it closed
        return False

    wait_until(refused, 3, "new connections to be refused")
    slow.join(10)
    assert result["r"] == (200, f"pid={run.ready_pids()[1]} lifespan=True")
    assert run.wait() == 0


def test_wsgi_graceful_stop_finishes_the_request_in_its_thread(supervise):
    port = free_port()
    run = supervise("wsgipid:app", "-w", "1", "--bind", f"127.0.0.1:{port}", env={"SLEEP_S": "1.5"})
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
    slow.join(10)
    assert result["r"] == (200, f"pid={run.ready_pids()[1]}")
    assert run.wait() == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_a_blocked_event_loop_gets_the_worker_replaced(supervise, engine):
    port = free_port()
    run = supervise(
        "asgiapp:app", "-w", "1", *http_engine(engine), "--bind", f"127.0.0.1:{port}", "--timeout", "1"
    )
    first = run.wait_ready(1)[1]
    threading.Thread(target=_blocked_request, args=(port,), daemon=True).start()
    stuck = run.wait_event("worker stuck; dumping its stacks to stderr, then killing it")[0]
    assert stuck["worker_pid"] == first
    run.wait_event("worker ready", count=2)
    assert get(port)[0] == 200
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def _blocked_request(port: int) -> None:
    with contextlib.suppress(OSError):  # its worker is killed mid-request
        get(port, "/block", timeout=10)


@pytest.mark.parametrize("engine", ENGINES)
def test_lifespan_startup_failure_is_a_boot_failure(supervise, engine):
    port = free_port()
    run = supervise(
        "asgiapp:app",
        "-w",
        "2",
        *http_engine(engine),
        "--bind",
        f"127.0.0.1:{port}",
        env={"FAIL_STARTUP": "1"},
    )
    assert run.wait() == 3


def test_asgi2_class_with_interface(supervise):
    port = free_port()
    run = supervise("asgiapp:Legacy", "-w", "1", "--interface", "asgi", "--bind", f"127.0.0.1:{port}")
    run.wait_ready(1)
    assert get(port) == (200, "asgi2")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_an_http_target_listens_on_the_default_address_without_bind(supervise):
    run = supervise("asgiapp:app", "-w", "1")
    # decided by the outcome, not by probing first: another process may hold 8000
    wait_until(lambda: run.find("worker ready") or run.proc.poll() is not None, 15, "ready or exit")
    if run.proc.poll() is not None:
        assert run.wait() == 2
        assert run.final(2) == "cannot listen on 127.0.0.1:8000: address already in use"
        return
    assert run.find("listening")[0]["on"] == ["http://127.0.0.1:8000"]
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


# splitbody: the head goes out before the body, as with Starlette or FastAPI; a
# retiring worker once closed such a connection after its response, resetting
# the client's next request
@pytest.mark.parametrize("target", ["asgiapp:app", "wsgipid:app", "splitbody:app"])
def test_hup_under_keep_alive_load_fails_no_request(supervise, target):
    port = free_port()
    run = supervise(target, "-w", "2", "--bind", f"127.0.0.1:{port}")
    old = run.wait_ready(2)
    with keep_alive_load(port, clients=8) as results:
        wait_until(lambda: len(results) > 200, 10, "load to start")
        run.signal(signal.SIGHUP)
        run.wait_event("reload complete", timeout=30)
        run.wait_event("worker exited", count=2, reason="reload", timeout=30)
        # the load has moved to the new workers (which of them each keep-alive
        # client reconnects to is the kernel's choice, so not necessarily both)
        old_ids = {f"pid={p}" for p in old.values()}
        wait_until(
            lambda: (
                (recent := [b.split()[0] for s, b in results[-50:] if s == "ok"])
                and not old_ids & set(recent)
            ),
            10,
            "the new workers to serve the load",
        )
    failures = [r for r in results if r[0] != "ok"]
    assert failures == [], failures[:5]
    assert len(results) > 500
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


@pytest.mark.parametrize(
    ("engine", "target"),
    [
        pytest.param("uvicorn", "asgiapp:app", id="uvicorn-asgi"),
        pytest.param("granian", "asgiapp:app", id="granian-asgi", marks=NEEDS_GRANIAN),
        pytest.param("granian", "wsgipid:app", id="granian-wsgi", marks=NEEDS_GRANIAN),
    ],
)
def test_max_requests_recycles_through_the_rolling_path(supervise, engine, target):
    port = free_port()
    run = supervise(
        target, "-w", "1", *http_engine(engine), "--bind", f"127.0.0.1:{port}", "--max-requests", "5"
    )
    run.wait_ready(1)
    pids = set()

    def two_recycles() -> bool:
        # one request at a time, for as long as it takes on a loaded machine: each
        # worker gets over its limit, then is replaced while it keeps serving
        status, body = get(port)
        assert status == 200
        pids.add(body.split()[0])
        return len(run.find("recycling worker")) >= 2

    wait_until(two_recycles, 20, "two recycles")
    assert all(e["reason"] == "max requests (5)" for e in run.find("recycling worker"))
    assert len(pids) >= 2
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def _health(port: int, path: str) -> tuple[int, dict[str, object]]:
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_health_endpoint_readiness_follows_the_workers(supervise):
    port = free_port()
    booting = supervise(
        "mains:wait",
        "-w",
        "1",
        "--hooks",
        "hooks_slowboot",
        "--graceful-timeout",
        "1",
        "--health-bind",
        f"127.0.0.1:{port}",
    )
    booting.wait_event("health endpoint")
    booting.wait_event("worker spawned")
    status, body = _health(port, "/readyz")
    assert status == 503 and body["workers_ready"] == 0 and body["ready"] is False
    assert _health(port, "/livez")[0] == 200
    booting.signal(signal.SIGTERM)
    assert booting.wait() == 0

    port = free_port()
    run = supervise("mains:wait", "-w", "2", "--health-bind", f"127.0.0.1:{port}")
    run.wait_event("all workers ready")
    status, body = _health(port, "/readyz")
    assert status == 200
    assert body == {
        "ready": True,
        "workers_ready": 2,
        "workers": 2,
        "reloading": False,
        "stopping": False,
        "migrations": "none",
        "overloaded": False,
        "workers_overloaded": 0,
    }
    assert _health(port, "/nope")[0] == 404
    # a client that connects and says nothing does not block the master
    silent = socket.create_connection(("127.0.0.1", port))
    assert _health(port, "/livez")[0] == 200
    silent.close()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


@pytest.mark.parametrize(
    ("engine", "target"),
    [
        pytest.param("uvicorn", "wsgidb:app", id="uvicorn-wsgi"),
        pytest.param("granian", "wsgidb:app", id="granian-wsgi", marks=NEEDS_GRANIAN),
        pytest.param("granian", "asgidb:app", id="granian-asgi", marks=NEEDS_GRANIAN),
    ],
)
def test_requests_query_the_workers_own_pool(supervise, postgres_url, engine, target):
    from concurrent.futures import ThreadPoolExecutor

    port = free_port()
    run = supervise(
        target,
        "-w",
        "2",
        *http_engine(engine),
        "--threads",
        "4",
        "--pool-max-size",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        env={"DATABASE_URL": postgres_url},
    )
    pids = run.wait_ready(2)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: get(port), range(80)))
    assert all(status == 200 for status, _ in results), results[:3]
    module = target.split(":")[0]
    for _, body in results:  # each answer came from the answering worker's own pool
        pid, app = (part.split("=", 1)[1] for part in body.split())
        worker = next(w for w, p in pids.items() if str(p) == pid)
        assert app == f"{module}:worker-{worker}@{socket.gethostname()}"
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_wsgi_graceful_stop_and_plain_app(supervise):
    port = free_port()
    run = supervise("wsgi_app:app", "-w", "1", "--bind", f"127.0.0.1:{port}")
    run.wait_ready(1)
    assert get(port) == (200, "hi")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_bad_bind_addresses_exit_2(supervise):
    for address in ("127.0.0.1:99999", "::1:8000", "nowhere"):
        run = supervise("asgiapp:app", "--bind", address)
        assert run.wait() == 2, address
        assert "is not HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N" in run.final(2)


@pytest.mark.parametrize(
    ("engine", "target"),
    [
        pytest.param("uvicorn", "asgiapp:app", id="uvicorn-asgi"),
        pytest.param("granian", "wsgipid:app", id="granian-wsgi", marks=NEEDS_GRANIAN),
    ],
)
def test_a_silent_connection_does_not_hold_a_retiring_worker(supervise, engine, target):
    port = free_port()
    run = supervise(
        target, "-w", "1", *http_engine(engine), "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "30"
    )
    old = run.wait_ready(1)[1]
    silent = socket.create_connection(("127.0.0.1", port))  # connects, never sends
    try:
        wait_until(lambda: get(port)[0] == 200, 5, "the worker to answer")
        started = time.monotonic()
        run.signal(signal.SIGHUP)
        run.wait_event("worker exited", worker_pid=old, reason="reload", timeout=15)
        assert time.monotonic() - started < 10  # the keep-alive timeout (grace), not the 30 s deadline
        assert not run.find("did not stop in time; exiting")
    finally:
        silent.close()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_hup_with_preload_loads_new_code_keeping_pid_and_sockets(supervise, app_dir: Path):
    port = free_port()
    run = supervise(
        "versioned:app",
        "-w",
        "2",
        "--preload",
        "--bind",
        f"127.0.0.1:{port}",
        cwd=app_dir,
        env={"PYTHONPATH": str(app_dir)},
    )
    old = run.wait_ready(2)
    with keep_alive_load(port, clients=4) as results:
        wait_until(lambda: len(results) > 100, 10, "load")
        (app_dir / "versioned.py").write_text(
            (app_dir / "versioned.py").read_text().replace('VERSION = "1"', 'VERSION = "2"')
        )
        run.signal(signal.SIGHUP)
        run.wait_event("re-executed with new code", timeout=30)
        run.wait_event("worker exited", count=2, reason="reload (previous image)", timeout=30)
        wait_until(lambda: results[-1] == ("ok", "version=2"), 10, "new code to answer")
    failures = [r for r in results if r[0] != "ok"]
    assert failures == [], failures[:5]
    assert run.find("re-executed with new code")[0]["pid"] == run.pid  # same master pid
    new = {e["worker_pid"] for e in run.find("worker ready")} - set(old.values())
    assert len(new) == 2
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_hup_with_preload_and_broken_new_code_keeps_serving(supervise, app_dir: Path):
    port = free_port()
    run = supervise(
        "versioned:app",
        "-w",
        "1",
        "--preload",
        "--bind",
        f"127.0.0.1:{port}",
        cwd=app_dir,
        env={"PYTHONPATH": str(app_dir)},
    )
    run.wait_ready(1)
    (app_dir / "versioned.py").write_text("VERSION = \n")
    run.signal(signal.SIGHUP)
    aborted = run.wait_event(
        "reload aborted: the new code or configuration does not load; the running workers are kept",
        timeout=30,
    )[0]
    assert "SyntaxError" in aborted["error"]
    assert get(port) == (200, "version=1")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


@pytest.mark.parametrize("during", ["the check of the new code", "the exec"])
def test_a_term_during_a_preload_reload_stops_the_master_cleanly(supervise, app_dir: Path, during: str):
    """A preload reload first checks the new code in another interpreter, then
    re-executes the master, whose new image takes a while to start. A TERM in
    either window must stop the master and its workers: not be lost with the
    old image, nor meet the default action (exit by signal, workers orphaned)."""
    port = free_port()
    run = supervise("versioned:app", "-w", "2", "--preload", "--bind", f"127.0.0.1:{port}",
                    cwd=app_dir, env={"PYTHONPATH": str(app_dir)})  # fmt: skip
    workers = set(run.wait_ready(2).values())
    run.signal(signal.SIGHUP)
    if during == "the exec":
        run.wait_event(
            "re-executing the master to load new code; pid, sockets and workers are kept", timeout=30
        )
    # else at once: the check of the new code takes an interpreter's start and an import
    run.signal(signal.SIGTERM)
    assert run.wait(40) == 0
    wait_until(lambda: not any(alive(pid) for pid in workers), 15, "the workers to stop")


def test_factory(supervise):
    port = free_port()
    run = supervise("asgiapp:create_app", "--factory", "-w", "1", "--bind", f"127.0.0.1:{port}")
    run.wait_ready(1)
    assert get(port)[0] == 200
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_two_quick_preload_reloads_keep_every_generation_alive_until_replaced(supervise, app_dir: Path):
    port = free_port()
    run = supervise(
        "versioned:app",
        "-w",
        "1",
        "--preload",
        "--bind",
        f"127.0.0.1:{port}",
        "--hooks",
        "hooks_slowboot_once",
        cwd=app_dir,
        env={"PYTHONPATH": str(app_dir), "SLOWBOOT_FLAG": str(app_dir / "slow")},
    )
    run.wait_ready(1)
    run.signal(signal.SIGHUP)
    run.wait_event("re-executed with new code", timeout=30)
    run.wait_event("worker spawned", count=2, timeout=30)  # the new image's worker is booting
    run.signal(signal.SIGHUP)  # the first image's worker is still serving: not yet retired
    run.wait_event("re-executed with new code", count=2, timeout=30)
    wait_until(
        lambda: len(run.find("worker exited", reason="reload (previous image)")) >= 2,
        30,
        "both earlier generations to be retired",
    )
    assert not run.find("master process is gone; stopping")  # nobody was orphaned
    assert get(port)[0] == 200
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_systemd_socket_activation(supervise):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    # what systemd does: the socket at fd 3, LISTEN_PID = the pid it execs into
    launcher = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'supervisor', 'asgiapp:app', '-w', '1'])\n"
    )
    run = supervise(str(sock.fileno()), cmd=[sys.executable, "-c", launcher], pass_fds=(sock.fileno(),))
    sock.close()
    run.wait_ready(1)
    assert run.find("listening")[0]["on"] == [f"http://127.0.0.1:{port}"]
    assert get(port)[0] == 200
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


@pytest.mark.parametrize("threads", ["1", "4"])
def test_wsgi_bodies_streams_and_errors_over_http(supervise, threads):
    port = free_port()
    run = supervise("wsgi_full:app", "-w", "1", "--threads", threads, "--bind", f"127.0.0.1:{port}")
    run.wait_ready(1)
    assert get(port) == (200, "sync" if threads == "1" else "threaded")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = bytes(range(256)) * 12_000  # 3 MB: spooled to disk by the bridge
        conn.request("POST", "/echo", body=payload)
        response = conn.getresponse()
        assert response.read().decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
        conn.request("GET", "/stream")  # same keep-alive connection
        response = conn.getresponse()
        assert response.getheader("transfer-encoding") == "chunked"
        assert response.read() == b"piece 0\npiece 1\npiece 2\n"
        conn.request("GET", "/error")
        response = conn.getresponse()
        assert (response.status, response.read()) == (500, b"Internal Server Error")
    finally:
        conn.close()
    assert get(port)[0] == 200  # the worker lived through the error
    assert run.wait_event("WSGI app raised")  # the worker's line may still be in the pipe
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
