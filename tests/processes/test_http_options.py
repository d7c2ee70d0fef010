"""The HTTP server's options end to end: HTTPS with a certificate made here,
proxy headers from a trusted and an untrusted peer, keep-alive and the
concurrency limit, WebSockets (also across a HUP reload), and the structured
access log; for ASGI and WSGI apps alike, under a real ``supervise``."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import alive, free_port, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

PASSWORD = "tls-pass-Hunter2"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1, its key (plain and encrypted),
    and a key that does not belong to it."""
    d = tmp_path_factory.mktemp("certs")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
        "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
    )  # fmt: skip
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "other.pem")
    openssl("pkey", "-in", "key.pem", "-aes256", "-passout", f"pass:{PASSWORD}", "-out", "encrypted.pem")
    (d / "password").write_text(PASSWORD + "\n")
    (d / "password").chmod(0o600)
    return d


def request(
    port: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
    tls: Path | None = None,
) -> tuple[int, dict[str, str], dict[str, object]]:
    if tls is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        context = ssl.create_default_context(cafile=str(tls / "cert.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(body or b"{}")
    finally:
        conn.close()


@pytest.mark.parametrize("target", ["echo:app", "echo:wsgi"])
def test_https_with_a_real_handshake(supervise, certs: Path, target: str):
    port = free_port()
    run = supervise(
        target, "-w", "1", "-b", f"127.0.0.1:{port}",
        "--ssl-certfile", str(certs / "cert.pem"), "--ssl-keyfile", str(certs / "encrypted.pem"),
        "--ssl-keyfile-password-file", str(certs / "password"),
    )  # fmt: skip
    run.wait_ready(1)
    assert run.find("listening")[0]["on"] == [f"https://127.0.0.1:{port}"]
    status, _, seen = request(port, "/", tls=certs)
    assert status == 201
    assert seen["scheme"] == "https"  # the app (and a WSGI app's wsgi.url_scheme) knows
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        request(port, "/")  # plain HTTP on a TLS listener is not served
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert PASSWORD not in "\n".join(run.lines)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (("cert.pem", "other.pem", None), "the key does not match the certificate"),
        (("missing.pem", "key.pem", None), "No such file or directory"),
        (("cert.pem", "encrypted.pem", None), "the key is encrypted and the password is wrong or missing"),
    ],
)
def test_bad_tls_files_stop_the_start_before_the_database(supervise, certs: Path, files, message):
    cert, key, _ = files
    # an unreachable database with a long wait: reaching the database step would hang, not exit 2
    run = supervise(
        "echo:app", "-b", f"127.0.0.1:{free_port()}", "--ssl-certfile", str(certs / cert),
        "--ssl-keyfile", str(certs / key), "--database-url", "postgresql://127.0.0.1:1/nothing",
        "--db-wait-timeout", "600",
    )  # fmt: skip
    assert run.wait(30) == 2
    assert message in run.final(2)
    assert "Traceback" not in "\n".join(run.lines)


def test_check_shows_tls_settings_and_refuses_a_bad_pair(supervise, certs: Path, tmp_path: Path):
    from test_cli import _row, cli

    out = cli(
        "check", "echo:app", "--ssl-certfile", str(certs / "cert.pem"),
        "--ssl-keyfile", str(certs / "encrypted.pem"),
        "--ssl-keyfile-password-file", str(certs / "password"), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert _row(out.stdout, "ssl_certfile") == ["ssl_certfile", str(certs / "cert.pem"), "--ssl-certfile"]
    assert PASSWORD not in out.stdout + out.stderr
    out = cli(
        "check", "echo:app", "--ssl-certfile", str(certs / "cert.pem"),
        "--ssl-keyfile", str(certs / "other.pem"), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "does not match" in out.stderr


@pytest.mark.parametrize("target", ["echo:app", "echo:wsgi"])
def test_proxy_headers_from_a_trusted_peer_only(supervise, target: str):
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    port = free_port()
    run = supervise(target, "-w", "1", "-b", f"127.0.0.1:{port}", "--access-log")
    run.wait_ready(1)
    _, _, seen = request(port, headers=forwarded)
    assert (seen["client"], seen["scheme"]) == ("203.0.113.7", "https")  # 127.0.0.1 is trusted
    logged = run.wait_event("request")[0]
    assert logged["client"] == "203.0.113.7"
    run.signal(signal.SIGTERM)
    assert run.wait() == 0

    for args in (["--forwarded-allow-ips", "10.1.2.3"], ["--no-proxy-headers"]):
        port = free_port()
        run = supervise(target, "-w", "1", "-b", f"127.0.0.1:{port}", *args)
        run.wait_ready(1)
        _, _, seen = request(port, headers=forwarded)
        assert (seen["client"], seen["scheme"]) == ("127.0.0.1", "http"), args
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


def test_forwarded_allow_ips_from_the_conventional_variable(supervise):
    port = free_port()
    run = supervise("echo:app", "-w", "1", "-b", f"127.0.0.1:{port}", env={"FORWARDED_ALLOW_IPS": "10.9.9.9"})
    run.wait_ready(1)
    _, _, seen = request(port, headers={"X-Forwarded-For": "203.0.113.7"})
    assert seen["client"] == "127.0.0.1"


def test_keep_alive_timeout_closes_an_idle_connection(supervise):
    port = free_port()
    run = supervise("echo:app", "-w", "1", "-b", f"127.0.0.1:{port}", "--keep-alive", "0.5")
    run.wait_ready(1)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"}" not in received:
            received += sock.recv(65536)
        sent_at = time.monotonic()
        assert sock.recv(65536) == b""  # the server closed the idle connection
        assert time.monotonic() - sent_at < 5  # after --keep-alive, not the default or never


def test_limit_concurrency_answers_503(supervise):
    port = free_port()
    run = supervise("echo:app", "-w", "1", "-b", f"127.0.0.1:{port}", "--limit-concurrency", "2")
    run.wait_ready(1)
    slow: list[int] = []
    thread = threading.Thread(target=lambda: slow.append(request(port, "/sleep?3")[0]))
    thread.start()
    try:
        run.wait_event("sleeping")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 503
        conn.close()
    finally:
        thread.join(15)
    assert slow == [201]


def test_websocket_echo_and_max_size(supervise):
    port = free_port()
    run = supervise("echo:app", "-w", "1", "-b", f"127.0.0.1:{port}", "--ws-max-size", "1000")
    run.wait_ready(1)
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
        assert str(ws.recv(timeout=10)).startswith("pid=")
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send("x" * 2000)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


def test_websocket_keeps_working_on_a_retiring_worker_across_a_reload(supervise):
    port = free_port()
    run = supervise("echo:app", "-w", "1", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "60")
    old_pid = run.wait_ready(1)[1]
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as old:
        assert old.recv(timeout=10) == f"pid={old_pid}"
        run.signal(signal.SIGHUP)
        new_pid = wait_until(lambda: (p := run.ready_pids()[1]) != old_pid and p, 30, "a new worker")
        run.wait_event("Shutting down", pid=old_pid)  # uvicorn's, in the retiring worker
        # the old worker has been told to retire and stopped listening; its open websocket still echoes
        for text in ("after reload", "still here"):
            old.send(text)
            assert old.recv(timeout=10) == text
        assert alive(old_pid)
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as new:
            assert new.recv(timeout=10) == f"pid={new_pid}"  # new connections go to the new worker
    # closed by the client: the retiring worker then exits long before --graceful-timeout
    wait_until(lambda: not alive(old_pid), 20, "the old worker to exit once its websocket closed")


def test_access_log_fields_and_request_id(supervise):
    port = free_port()
    run = supervise("echo:app", "-w", "1", "-b", f"127.0.0.1:{port}", "--access-log")
    run.wait_ready(1)
    _, headers, seen = request(port, "/some/path?a=1&b=2")
    generated = headers["x-request-id"]
    assert seen["request_id"] == generated  # the app sees the generated id as a request header
    event = run.wait_event("request")[0]
    assert event["method"] == "GET" and event["path"] == "/some/path" and event["query"] == "a=1&b=2"
    assert event["status"] == 201 and event["bytes"] == len(json.dumps(seen))
    assert event["client"] == "127.0.0.1" and event["worker_id"] == 1
    assert event["request_id"] == generated and 0 <= event["duration_ms"] < 5000
    _, headers, seen = request(port, "/", headers={"X-Request-ID": "abc-123"})
    assert seen["request_id"] == "abc-123" and "x-request-id" not in headers  # taken, not echoed
    assert run.wait_event("request", request_id="abc-123")
    request(port, "/")
    ids = [e["request_id"] for e in run.wait_event("request", count=3)]
    assert len(set(ids)) == 3
    assert not any("HTTP/1.1" in line for line in run.lines)  # uvicorn's own access line is off


def test_access_log_for_wsgi_with_a_custom_header(supervise):
    port = free_port()
    run = supervise(
        "echo:wsgi", "-w", "1", "-b", f"127.0.0.1:{port}", "--access-log", "--request-id-header", "X-Trace",
    )  # fmt: skip
    run.wait_ready(1)
    _, headers, _ = request(port, "/w?x=1", headers={"X-Trace": "t-1"})
    event = run.wait_event("request")[0]
    assert (event["path"], event["query"], event["status"], event["request_id"]) == ("/w", "x=1", 201, "t-1")
    _, headers, seen = request(port, "/w")
    # echoed under the configured name (the app reads HTTP_X_TRACE, not HTTP_X_REQUEST_ID)
    assert headers["x-trace"] and seen["request_id"] is None
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_no_access_log_by_default(supervise):
    port = free_port()
    run = supervise("echo:app", "-w", "1", "-b", f"127.0.0.1:{port}")
    run.wait_ready(1)
    _, headers, _ = request(port, "/")
    assert "x-request-id" not in headers
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert not run.find("request")


def test_websocket_on_a_retiring_worker_is_closed_with_1012_at_the_graceful_timeout(supervise):
    port = free_port()
    run = supervise("echo:app", "-w", "1", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3")
    old_pid = run.wait_ready(1)[1]
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
        ws.recv(timeout=10)
        run.signal(signal.SIGHUP)
        run.wait_event("Shutting down", pid=old_pid)
        retired_at = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
        # "service restart": the client reconnects, and lands on a new worker
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert time.monotonic() - retired_at > 1  # not at once: near the graceful timeout
    wait_until(lambda: not alive(old_pid), 10, "the old worker to exit")


@pytest.mark.parametrize("target", ["echo:app", "echo:wsgi"])
def test_granian_engine_gets_proxy_headers_and_the_access_log(supervise, target: str):
    pytest.importorskip("granian")
    port = free_port()
    run = supervise(target, "-w", "1", "-b", f"127.0.0.1:{port}", "--http", "granian", "--access-log")
    run.wait_ready(1)
    _, headers, seen = request(
        port, "/g?q=1", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    )
    assert (seen["client"], seen["scheme"]) == ("203.0.113.9", "https")
    assert seen["request_id"] == headers["x-request-id"]
    event = run.wait_event("request")[0]
    assert (event["client"], event["path"], event["query"], event["status"]) == (
        "203.0.113.9",
        "/g",
        "q=1",
        201,
    )
    assert event["request_id"] == headers["x-request-id"] and event["bytes"] > 0 and event["duration_ms"] >= 0
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


@pytest.mark.parametrize("target", ["echo:app", "echo:wsgi"])
def test_granian_engine_serves_https(supervise, certs: Path, target: str):
    pytest.importorskip("granian")
    port = free_port()
    run = supervise(
        target, "-w", "1", "-b", f"127.0.0.1:{port}", "--http", "granian",
        "--ssl-certfile", str(certs / "cert.pem"), "--ssl-keyfile", str(certs / "key.pem"),
    )  # fmt: skip
    run.wait_ready(1)
    status, _, seen = request(port, "/", tls=certs)
    assert status == 201 and seen["scheme"] == "https"
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_granian_engine_refuses_what_it_does_not_apply(supervise, certs: Path):
    pytest.importorskip("granian")
    run = supervise("echo:app", "-b", f"127.0.0.1:{free_port()}", "--http", "granian", "--ws-max-size", "10")
    assert run.wait(30) == 2
    assert "--http granian does not apply --ws-max-size" in run.final(2)
    run = supervise(
        "echo:app", "-b", f"127.0.0.1:{free_port()}", "--http", "granian",
        "--ssl-certfile", str(certs / "cert.pem"), "--ssl-keyfile", str(certs / "encrypted.pem"),
        "--ssl-keyfile-password-file", str(certs / "password"),
    )  # fmt: skip
    assert run.wait(30) == 2
    assert "--http granian does not apply --ssl-keyfile-password-file" in run.final(2)
