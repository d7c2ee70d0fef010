"""Real framework apps (Flask and Django through the WSGI bridge, FastAPI on
uvicorn) under ``supervise``, over real HTTP: uploads, streaming, HEAD, 204
and 304, redirects, cookies, non-ASCII paths and a client that leaves.

One server per framework, every check against it in turn (each check says
what failed), so the module stays well under a minute."""

from __future__ import annotations

import hashlib
import http.client
import signal
from collections.abc import Callable, Iterator

import pytest

from conftest import RawConnection, Run, free_port

pytest.importorskip("flask")
pytest.importorskip("django")
pytest.importorskip("fastapi")

APPS = {"flask": "conf_flask:app", "django": "conf_django:app", "fastapi": "conf_fastapi:app"}
UPLOAD = bytes(range(256)) * (50 * 4096)  # 50 MB


def digest(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def exchange(
    port: int, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        chunked = isinstance(body, Iterator)
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "conformance-boundary-7f3a"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("framework", list(APPS))
def test_framework_app_over_http(supervise: Callable[..., Run], framework: str) -> None:
    port = free_port()
    run = supervise(APPS[framework], "-w", "1", "--bind", f"127.0.0.1:{port}")
    run.wait_ready(1, timeout=30)

    body, content_type = multipart(UPLOAD)
    status, _, answer = exchange(port, "POST", "/upload", body, {"Content-Type": content_type})
    assert (status, answer.decode()) == (200, digest(UPLOAD)), "multipart upload"

    if framework != "django":  # Django reads CONTENT_LENGTH bytes only: no chunked uploads (gunicorn alike)
        pieces = [UPLOAD[i : i + 65536] for i in range(0, 5_000_000, 65536)]
        status, _, answer = exchange(port, "POST", "/raw", iter(pieces))
        assert (status, answer.decode()) == (200, digest(b"".join(pieces))), "chunked upload"

    status, headers, answer = exchange(port, "GET", "/stream")
    assert (status, headers["transfer-encoding"], answer) == (200, "chunked", b"piece 0\npiece 1\npiece 2\n")

    status, get_headers, answer = exchange(port, "GET", "/etag")
    assert (status, answer) == (200, b"versioned body"), "GET with an ETag"
    status, headers, answer = exchange(port, "HEAD", "/etag")
    assert (status, answer) == (200, b""), "HEAD"
    if framework == "django":  # it empties a HEAD body itself: no length to tell (gunicorn: none either)
        assert "content-length" not in headers, "HEAD"
    else:
        assert headers["content-length"] == get_headers["content-length"] == "14", "HEAD keeps GET's length"
    status, headers, answer = exchange(port, "GET", "/etag", headers={"If-None-Match": '"v1"'})
    assert (status, answer, headers["etag"]) == (304, b"", '"v1"'), "304"

    conn = RawConnection(port)
    for _ in range(2):  # no body, no length, and the connection goes on
        conn.send(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.read_response()
        assert (response.status, response.body) == (204, b"") and "content-length" not in response.headers
    conn.close()

    status, headers, _ = exchange(port, "GET", "/redirect")
    assert status == 302 and headers["location"].endswith("/target"), "redirect"

    status, headers, _ = exchange(port, "GET", "/cookie")
    cookie = headers["set-cookie"]
    assert status == 200 and cookie.startswith("flavour=oat") and "httponly" in cookie.lower(), cookie
    assert exchange(port, "GET", "/whoami", headers={"Cookie": "other=1; flavour=oat"})[2] == b"oat"

    status, _, answer = exchange(port, "GET", "/%C3%BCn%C3%AF/caf%C3%A9")
    assert (status, answer.decode()) == (200, "/ünï/café|café"), "non-ASCII path"

    conn = RawConnection(port)
    conn.send(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
    while len(conn.buf) < 8192:
        conn._fill()
    conn.close()
    run.wait_event("endless stream closed", timeout=5)

    run.signal(signal.SIGTERM)
    assert run.wait() == 0
