"""Fixtures for the project's own tests, built on the pytest plugin's harness."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import stamina

from supervisor.testing.launch import (
    SupervisorProcess,
    alive,
    session_pids,
    wait_until,
)

APPS = Path(__file__).parent / "apps"
Run = SupervisorProcess
__all__ = [
    "APPS",
    "RawConnection",
    "RawResponse",
    "Run",
    "alive",
    "backends",
    "docs_recipes",
    "free_port",
    "session_pids",
    "wait_until",
]


def docs_recipes() -> dict[str, str]:
    """The files of docs/migrations.md's recipes: name -> SQL (each fenced
    ```sql block that opens with a file's name as a comment)."""
    docs = (Path(__file__).parent.parent / "docs" / "migrations.md").read_text()
    recipes = docs[docs.index("### Recipes") :]
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"```sql\n-- (\d{4}_[\w-]+\.sql)[^\n]*\n(.*?)```", recipes, re.DOTALL)
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated name keeps its last value
    body: bytes
    head: bytes  # the status line and headers as sent


class RawConnection:
    """One client connection speaking bytes, for what http.client hides:
    HTTP/1.0, 100-continue, framing, limits, a client that leaves."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_response(self, head_request: bool = False) -> RawResponse:
        """The next response (a 1xx is one too), its body framed as the headers say."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_request or status < 200 or status in (204, 304):
            body = b""
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._take(2)
            while self._line():  # trailers, then the empty line
                pass
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        else:  # ends where the connection does
            with contextlib.suppress(EOFError):
                while True:
                    self._fill()
            body, self.buf = self.buf, b""
        return RawResponse(status, headers, body, head)

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server closes (or resets) the connection within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def backends(url: str) -> list[tuple[int, str]]:
    """(backend pid, application_name) of every other client of ``url``'s database."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "select pid, application_name from pg_stat_activity where datname = %s "
            "and pid <> pg_backend_pid() and backend_type = 'client backend'",
            (dbname,),
        ).fetchall()


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., SupervisorProcess]]:
    """Start ``python -m supervisor ARGS`` in ``tmp_path`` with the test apps importable;
    after the test, fail if any process of its session outlived the master."""
    runs: list[SupervisorProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        cmd: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> SupervisorProcess:
        full_env = {"PYTHONPATH": str(APPS), **(env or {})}
        run = SupervisorProcess(list(args), cwd or tmp_path, full_env, cmd, pass_fds)
        runs.append(run)
        return run

    yield start
    leftovers = {}
    for run in runs:
        leftover = run.finish()
        if leftover:
            leftovers[run.pid] = leftover
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory with a copy of the test apps, for tests that edit them."""
    dest = tmp_path / "app"
    shutil.copytree(APPS, dest)
    return dest


@pytest.fixture
def instant_retries() -> Iterator[None]:
    """stamina's retries without their waits, for the tests of ``retry_transient``."""
    stamina.set_testing(True, attempts=5)
    yield
    stamina.set_testing(False)


@pytest.fixture
def own_socket_dirs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, short directory for this test's control sockets, in both places
    masters put them ($XDG_RUNTIME_DIR/supervise and $TMPDIR/supervise-UID), so
    ``supervise status`` from an unrelated directory, which looks there for the
    one master of this user, sees this test's masters and no one else's. Every
    process the test starts inherits it."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="sv", dir="/tmp"))  # short: a unix socket path has 108 bytes
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    monkeypatch.setenv("TMPDIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)
