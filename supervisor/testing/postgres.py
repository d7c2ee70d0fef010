"""Find or make a PostgreSQL server for tests.

In order: ``SUPERVISE_TEST_DATABASE_URL``; a testcontainers container when a
Docker engine answers; a throwaway local cluster made with ``initdb`` and
``pg_ctl`` (run as the ``postgres`` system user when we are root, because
PostgreSQL refuses to run as root). Loopback only, fsync off.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ENV_URL = "SUPERVISE_TEST_DATABASE_URL"
ENV_REQUIRE = "SUPERVISE_TEST_REQUIRE_DB"


@dataclass(frozen=True)
class PostgresServer:
    """A server tests may create databases on; ``url`` connects as a superuser."""

    url: str
    source: str  # "env", "testcontainers" or "local"

    def url_for(self, dbname: str) -> str:
        return _with_dbname(self.url, dbname)


def _with_dbname(url: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params: dict[str, Any] = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "test") -> Iterator[str]:
    """A new, empty database on the server at ``server_url`` (a superuser's
    URL), dropped afterwards even if clients are still connected."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_bindir() -> str | None:
    """Directory holding initdb and pg_ctl, or None."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        if os.path.exists(os.path.join(found, "initdb")):
            return found
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
    )
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _reachable_by(path: str, uid: int, gid: int) -> bool:
    """Whether ``uid`` can walk down to ``path`` (search permission on each
    directory on the way), judged from the mode bits as the kernel would."""
    here = os.path.realpath(path)
    parts = [here]
    while here != os.path.dirname(here):
        here = os.path.dirname(here)
        parts.append(here)
    for part in parts:
        st = os.stat(part)
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _cluster_parent(run_as: dict[str, Any]) -> str | None:
    """Where to make the cluster's directory: the temporary directory, unless
    the user PostgreSQL runs as cannot reach it (root's TMPDIR is often a
    private 0700 directory, as pytest's own are); then a shared one."""
    if not run_as:
        return None
    uid, gid = run_as["user"], run_as["group"]
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        if os.path.isdir(candidate) and _reachable_by(candidate, uid, gid):
            return candidate
    raise RuntimeError(
        f"no temporary directory that user {pwd.getpwuid(uid).pw_name!r} can reach "
        "for PostgreSQL's data (set TMPDIR to one it can)"
    )


class LocalCluster:
    """A throwaway cluster in a temporary directory; :meth:`stop` removes it."""

    def __init__(self, bindir: str, max_connections: int = 200) -> None:
        self.bindir = bindir
        self.max_connections = max_connections
        self._as = _run_as()
        self.dir = tempfile.mkdtemp(prefix="supervise-pg-", dir=_cluster_parent(self._as))
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        if self._as:
            os.chown(self.dir, self._as["user"], self._as["group"])
        self.url = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _pg(self, *args: str, timeout: float = 60) -> None:
        try:
            subprocess.run(
                args, check=True, capture_output=True, text=True, cwd=self.dir, timeout=timeout, **self._as
            )
        except subprocess.CalledProcessError as exc:
            # The tool's own last words say why (permissions, a port, a locale);
            # "exit status 1" alone does not.
            said = (exc.stderr or exc.stdout or "").strip().splitlines()
            why = said[-1] if said else f"exit status {exc.returncode}"
            logged = self.log().strip().splitlines()  # pg_ctl's own reason is in the server's log
            if logged:
                why += f" (server log: {logged[-1]})"
            raise RuntimeError(f"{os.path.basename(args[0])} failed: {why}") from None

    def start(self) -> None:
        self._pg(
            f"{self.bindir}/initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        self.restart()

    def restart(self, stop_first: bool = False) -> None:
        if stop_first:
            self.stop_server()
        self._pg(
            f"{self.bindir}/pg_ctl",
            "-D",
            self.data,
            "-l",
            os.path.join(self.dir, "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections={self.max_connections}",
            "start",
        )

    def stop_server(self) -> None:
        self._pg(f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError, RuntimeError):
            self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def local_cluster(max_connections: int = 200) -> Iterator[LocalCluster]:
    bindir = pg_bindir()
    if bindir is None:
        raise FileNotFoundError(
            "initdb/pg_ctl not found (install the PostgreSQL server binaries or set PG_BINDIR)"
        )
    cluster = LocalCluster(bindir, max_connections)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def container() -> Iterator[str]:
    """A testcontainers PostgreSQL, if the package is installed and an engine answers."""
    try:  # 4.x moved it; the old path still imports but warns
        from testcontainers.community.postgres import (  # type: ignore[import-not-found]
            PostgresContainer,
        )
    except ImportError:
        try:
            from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]
        except ImportError as exc:
            raise FileNotFoundError("testcontainers is not installed") from exc
    pg = PostgresContainer("postgres:16-alpine", driver=None)
    pg.start()
    try:
        yield str(pg.get_connection_url())
    finally:
        pg.stop()
