"""A database URL that can never work is exit 2 at once; only failures that
waiting can cure are retried for --db-wait-timeout."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from test_cli import cli

from conftest import free_port

SECRET = "hunter2secret"
NEVER = [
    (f"host=127.0.0.1 port=notaport password={SECRET}", "port 'notaport' is not a number from 1 to 65535"),
    (f"postgresql://app:{SECRET}@127.0.0.1/x?sslmode=bogus", "sslmode 'bogus' is not one of disable"),
    (f"host=127.0.0.1 colour=blue password={SECRET}", 'invalid connection option "colour"'),
    (f"postgresql://app:{SECRET}@127.0.0.1/x?colour=blue", 'invalid URI query parameter: "colour"'),
    (f"mysql://app:{SECRET}@127.0.0.1/x", "scheme 'mysql' is not postgresql:// or postgres://"),
    (f"postgresql+psycopg://app:{SECRET}@127.0.0.1/x", "drop '+psycopg': that is SQLAlchemy's spelling"),
    (f"postgresql://app:{SECRET}@127.0.0.1:70000/x", "port '70000' is not a number from 1 to 65535"),
]


def _migrations(tmp_path: Path) -> Path:
    mig = tmp_path / "mig"
    mig.mkdir(exist_ok=True)
    (mig / "0001_a.sql").write_text("create table a (id int);\n")
    return mig


@pytest.mark.parametrize("command", ["run", "check", "migrate"])
def test_a_url_that_can_never_work_is_exit_2_at_once(tmp_path: Path, command: str):
    mig = _migrations(tmp_path)
    args = ["--migrations", str(mig)] if command == "migrate" else ["mains:wait"]
    for url, message in NEVER:
        started = time.monotonic()
        out = cli(command, *args, "--db-wait-timeout", "60", "--database-url", url, cwd=tmp_path)
        took = time.monotonic() - started
        assert out.returncode == 2, (url, out.stderr)
        assert took < 15, f"{url}: {took:.1f} s: it was retried"  # 60 s if it waited
        assert out.stderr.startswith("supervise: error: database URL "), out.stderr
        assert "(from --database-url) is not usable: " in out.stderr and message in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
        assert SECRET not in out.stderr + out.stdout


def test_a_bad_libpq_variable_is_named(tmp_path: Path):
    out = cli("check", "mains:wait", cwd=tmp_path, env={"DATABASE_URL": "host=db", "PGSSLMODE": "requre"})
    assert out.returncode == 2
    assert out.stderr == (
        "supervise: error: database URL host=db (from env DATABASE_URL) with PGSSLMODE='requre' in the "
        "environment is not usable: sslmode 'requre' is not one of disable, allow, prefer, require, "
        "verify-ca, verify-full\n"
    )


def test_a_server_that_comes_up_during_the_wait_is_used(supervise, postgres_url, postgres_cluster, tmp_path):
    mig = _migrations(tmp_path)
    url = make_conninfo(**{**conninfo_to_dict(postgres_url), "password": SECRET})  # trust: ignored
    postgres_cluster.stop_server()
    try:
        run = supervise(
            "migrate", "--migrations", str(mig), "--db-wait-timeout", "120", env={"DATABASE_URL": url}
        )
        run.wait_event("waiting for PostgreSQL", count=2, timeout=30)
    finally:
        postgres_cluster.restart()
    assert run.wait(60) == 0, run.output()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select to_regclass('a')").fetchone() == ("a",)
    assert SECRET not in run.output()


def test_an_unresolvable_host_is_waited_for(supervise):
    # in Kubernetes and Compose a database's name resolves only once it exists
    run = supervise(
        "mains:wait", "--db-wait-timeout", "1.5", env={"DATABASE_URL": "postgresql://app@db.invalid/x"}
    )
    assert run.wait(30) == 5
    assert len(run.find("waiting for PostgreSQL")) >= 2
    # the cause (the resolver's own words vary: no such name, no DNS at all)
    assert "did not accept connections within 1.5 s (--db-wait-timeout): failed to resolve host " in (
        run.final(5)
    )


def test_a_refused_port_is_waited_for_and_a_stop_still_works(supervise):
    run = supervise(
        "mains:wait",
        "--db-wait-timeout",
        "60",
        env={"DATABASE_URL": f"postgresql://app@127.0.0.1:{free_port()}/x"},
    )
    run.wait_event("waiting for PostgreSQL", count=2)
    run.signal(15)
    assert run.wait(10) == 0


def test_a_databases_own_url_is_checked_before_its_pool_retries(supervise, tmp_path: Path):
    (tmp_path / "bad_own_db.py").write_text(
        "from supervisor import Database\n\n"
        f"db = Database('postgresql://app:{SECRET}@127.0.0.1/x?sslmode=bogsu', name='replica')\n\n\n"
        "def main(worker):\n    worker.stopping.wait()\n"
    )
    started = time.monotonic()
    run = supervise("bad_own_db:main", "-w", "1", "--pool-timeout", "60")
    assert run.wait(30) == 3
    assert time.monotonic() - started < 20  # not the 60 s the pool would have tried
    assert run.final(3) == (
        "database URL postgresql://app:***@127.0.0.1/x?sslmode=bogsu (from Database 'replica') is not "
        "usable: sslmode 'bogsu' is not one of disable, allow, prefer, require, verify-ca, verify-full"
    )
    assert SECRET not in run.output()
