"""retry_transient against a real server: a terminated backend is retried on a fresh
connection (which errors count as transient is logic/test_retry.py)."""

from __future__ import annotations

import psycopg
import pytest

from supervisor import retry_transient

pytestmark = pytest.mark.usefixtures("instant_retries")


def test_a_terminated_backend_is_retried_on_a_fresh_connection(postgres_url):
    killed: list[int] = []

    @retry_transient(attempts=3)
    def work() -> int:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            pid = conn.execute("select pg_backend_pid()").fetchone()[0]
            if not killed:
                killed.append(pid)
                with psycopg.connect(postgres_url, autocommit=True) as admin:
                    admin.execute("select pg_terminate_backend(%s)", (pid,))
            return conn.execute("select 42").fetchone()[0]

    assert work() == 42
    assert len(killed) == 1
