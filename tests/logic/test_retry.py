"""retry_transient: which errors are retried, and how often (a real terminated
backend is processes/test_retry_terminated_backend.py)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from supervisor import is_transient, retry_transient

pytestmark = pytest.mark.usefixtures("instant_retries")


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
