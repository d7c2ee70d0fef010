"""Retry idempotent database work on transient errors, with backoff.

Built on stamina (exponential backoff with jitter, a total timeout, and
``stamina.set_testing()`` to make retries instant in tests). Transient means
the work may well succeed if simply tried again: the connection failed
(SQLSTATE class 08, or no SQLSTATE at all because the socket died), the
server is shutting down (57P01), or the transaction lost a serialization
conflict or a deadlock (40001, 40P01). Only wrap work that is safe to repeat.
Nothing is retried once the request or job it serves has ended (refused,
past its deadline, its client gone), nor a refusal of the overloaded pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from supervisor.worker.time_budget import current

P = ParamSpec("P")
T = TypeVar("T")

TRANSIENT_SQLSTATES = frozenset({"57P01", "40001", "40P01"})


def is_transient(exc: Exception) -> bool:
    """True for errors that retrying the same work may cure."""
    import psycopg  # here, not at the top: `import supervisor` stays light

    if not isinstance(exc, psycopg.Error):
        return False
    budget = current.get()
    if budget is not None and (budget.outcome is not None or budget.remaining() <= 0):
        return False  # its request or job has ended (shed, timed out, client gone): nothing to retry for
    from psycopg_pool import TooManyRequests

    if isinstance(exc, TooManyRequests):
        return False  # refused by the managed queue or the pool: retrying adds to the overload
    state = exc.sqlstate
    if state is None:
        # no server answer at all: the connection broke or could not be made
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith("08") or state in TRANSIENT_SQLSTATES


def retry_transient(
    *, attempts: int = 5, timeout: float = 30.0, wait_initial: float = 0.1, wait_max: float = 5.0
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: call again on :func:`is_transient` errors, up to ``attempts``
    times and ``timeout`` seconds in all; then the last error is raised.

    Works on plain and ``async def`` functions. Open the connection *inside* the
    decorated function, so each attempt gets a healthy one from the pool::

        @retry_transient()
        def mark_done(job_id: int) -> None:
            with worker.db.connection() as conn:
                conn.execute("update jobs set done = true where id = %s", (job_id,))
    """
    import stamina

    return stamina.retry(
        on=is_transient, attempts=attempts, timeout=timeout, wait_initial=wait_initial, wait_max=wait_max
    )
