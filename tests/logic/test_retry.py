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


def test_nothing_is_retried_for_work_that_has_ended():
    """A refusal of the overloaded pool, or any error once its request was
    shed, timed out or left: retrying only holds a thread during overload."""
    import time

    from psycopg_pool import PoolTimeout, TooManyRequests

    from supervisor.worker.time_budget import EXPIRED, TimeBudget, current

    assert is_transient(PoolTimeout("no connection")) is True  # outside a request: the pool may come back
    assert is_transient(TooManyRequests("overloaded")) is False
    now = time.monotonic()
    for budget in (TimeBudget(now, now + 30, outcome=EXPIRED), TimeBudget(now - 2, now - 1)):
        token = current.set(budget)
        try:
            assert is_transient(psycopg.OperationalError("connection lost")) is False
            calls: list[int] = []

            @retry_transient(attempts=3)
            def ended(calls: list[int] = calls) -> None:
                calls.append(1)
                raise PoolTimeout("the request's deadline passed before it got a connection")

            with pytest.raises(PoolTimeout):
                ended()
            assert len(calls) == 1
        finally:
            current.reset(token)
