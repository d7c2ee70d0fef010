"""retry_transient: which errors are retried, and a real terminated backend."""

from __future__ import annotations

import psycopg
import pytest
import stamina
from psycopg import errors

from supervisor import is_transient, retry_transient


@pytest.fixture(autouse=True)
def _instant_retries():
    stamina.set_testing(True, attempts=5)
    yield
    stamina.set_testing(False)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (psycopg.OperationalError("connection lost"), True),
        (errors.AdminShutdown(), True),  # 57P01
        (errors.SerializationFailure(), True),  # 40001
        (errors.DeadlockDetected(), True),  # 40P01
        (errors.ConnectionFailure(), True),  # 08006
        (errors.UniqueViolation(), False),
        (errors.UndefinedTable(), False),
        (ValueError("not a database error"), False),
    ],
)
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


def test_retries_transient_errors_and_gives_up_on_others():
    calls = []

    @retry_transient(attempts=3)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise errors.SerializationFailure()
        return "done"

    assert flaky() == "done" and len(calls) == 3

    @retry_transient(attempts=3)
    def broken() -> None:
        calls.append(1)
        raise errors.UndefinedTable()

    calls.clear()
    with pytest.raises(errors.UndefinedTable):
        broken()
    assert len(calls) == 1


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
