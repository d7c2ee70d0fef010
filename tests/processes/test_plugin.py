"""The pytest plugin, used the way an application's test suite would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg

from conftest import APPS


def test_supervise_process_fixture_proves_an_app_fork_safe(supervise_process, postgres_url):
    run = supervise_process(
        "dbapp:hold", "-w", "2", env={"DATABASE_URL": postgres_url, "PYTHONPATH": str(APPS)}
    )
    run.wait_ready(2)
    with psycopg.connect(postgres_url) as conn:
        apps = {
            r[0]
            for r in conn.execute(
                "select application_name from pg_stat_activity where datname = current_database() "
                "and pid <> pg_backend_pid()"
            ).fetchall()
        }
    assert apps == {f"dbapp:worker-{i}@{socket.gethostname()}" for i in (1, 2)}
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def _pytest(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_db.py").write_text("def test_db(postgres_url):\n    assert postgres_url\n")
    full = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISE_TEST") and k != "PG_BINDIR"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_needs_db.py")],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_a_server_db_tests_skip_unless_required(tmp_path: Path):
    nothing = {
        "PG_BINDIR": str(tmp_path / "no-postgres-here"),
        "PATH": "/usr/bin:/bin",
        "DOCKER_HOST": "unix:///nonexistent.sock",
    }
    skipped = _pytest(tmp_path, nothing)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout
    required = _pytest(tmp_path, {**nothing, "SUPERVISE_TEST_REQUIRE_DB": "1"})
    assert required.returncode == 1
    assert "no PostgreSQL server for tests" in required.stdout


def test_env_url_is_used_as_is(tmp_path: Path, postgres_server):
    used = _pytest(tmp_path, {"SUPERVISE_TEST_DATABASE_URL": postgres_server.url})
    assert used.returncode == 0 and "1 passed" in used.stdout
