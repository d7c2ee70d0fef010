"""The lock rule: a migration never makes a table's lock queue wait longer than
``--table-lock-timeout``.

A statement that waits for a lock (an ``ALTER TABLE`` wanting ACCESS
EXCLUSIVE behind a report's long transaction) holds its place in the table's
lock queue, and every later query on that table, a plain ``select`` included,
queues behind it for as long as it waits. So every statement runs under
PostgreSQL's ``lock_timeout``. In a file's transaction the limit counts from
the start of the attempt, not per statement: a transaction that already holds
one table while it waits for the next makes that first table's readers wait
too, for the sum of its waits. When it runs out (SQLSTATE 55P03) the attempt
is rolled back, what holds the lock is named, and the file is tried again
after a jittered backoff; after ``--table-lock-attempts`` it fails with exit
5. A ``-- no-transaction`` file is retried statement by statement (what ran
before stays applied).

Statements that never make reads or writes queue (``CREATE INDEX
CONCURRENTLY``, ``DROP INDEX CONCURRENTLY``, ``REINDEX ... CONCURRENTLY``) run
with no limit instead: a lock timeout would only cut their wait for older
transactions short and leave an INVALID index behind.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from supervisor.errors import MigrationError
from supervisor.logging import get_logger
from supervisor.migrate.sqlfiles import Statement, identifiers
from supervisor.settings.config import Config

log = get_logger()

T = TypeVar("T")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0

# The sessions that hold a lock on a table the statement names, oldest
# transaction first: the one a queue waits for is usually the oldest, and the
# readers that queued behind the failed statement (granted as it gave up) are
# young. Its tables are resolved as the statement would resolve them.
_HOLDERS = """
select l.pid, string_agg(distinct l.mode || ' on ' || l.relation::regclass::text, ', '),
       min(a.application_name), min(a.usename), min(a.state),
       min(extract(epoch from now() - a.xact_start))::int, current_user
from pg_locks l left join pg_stat_activity a using (pid)
where l.locktype = 'relation' and l.granted and l.pid <> pg_backend_pid()
  and l.database = (select oid from pg_database where datname = current_database())
  and l.relation = any(array(select to_regclass(quote_ident(n)) from unnest(%s::text[]) n))
group by l.pid
order by min(a.xact_start) nulls last, l.pid
"""

_CONCURRENTLY = re.compile(
    r"^(create\s+(unique\s+)?index|drop\s+index|reindex\b.*)\s+concurrently\b", re.IGNORECASE | re.DOTALL
)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


@dataclass(frozen=True)
class Policy:
    """``--table-lock-timeout`` in ms (0: no limit set) and ``--table-lock-attempts``."""

    timeout_ms: int
    attempts: int

    @classmethod
    def of(cls, config: Config) -> Policy:
        seconds = config.table_lock_timeout
        return cls(max(1, round(seconds * 1000)) if seconds > 0 else 0, config.table_lock_attempts)

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: from 0.5 s, doubling, at most
        10 s, with half of it random ("equal jitter"), so two gaps are never
        shorter than a quarter second and masters retrying together drift apart."""
        step = min(FIRST_BACKOFF_S * 2.0 ** (attempt - 1), MAX_BACKOFF_S)
        return step / 2 + random.uniform(0, step / 2)


def never_queues_traffic(sql: str) -> bool:
    """A CONCURRENTLY build or drop: it takes a lock no read or write waits for."""
    return bool(_CONCURRENTLY.match(_COMMENTS.sub("", sql).strip()))


class LockTimeout(Exception):
    """A statement gave up waiting for a lock (55P03); its attempt was undone.
    ``statement`` is None for code whose statements we do not see (a callable)."""

    def __init__(self, statement: Statement | None, timeout_ms: int) -> None:
        super().__init__(statement.sql if statement else "")
        self.statement = statement
        self.timeout_ms = timeout_ms


class LockBudgetError(MigrationError):
    """Every attempt timed out on a lock; ``held_by`` says who held it last."""

    def __init__(self, message: str, held_by: str) -> None:
        super().__init__(message)
        self.held_by = held_by


@dataclass
class Attempt:
    """One try at a file's transaction: its statements share one wait budget."""

    policy: Policy
    started: float = field(default_factory=time.monotonic)

    def left_ms(self) -> int:
        if not self.policy.timeout_ms:
            return 0
        spent = (time.monotonic() - self.started) * 1000
        # at least 1 ms: 0 would mean no limit, and a lock that is free is
        # granted at once whatever the limit
        return max(1, round(self.policy.timeout_ms - spent))


def execute(conn: psycopg.Connection[Any], statement: Statement, timeout_ms: int, *, local: bool) -> None:
    """Run one statement under ``lock_timeout`` = ``timeout_ms`` (0: as the
    policy is off, leave the session's own); ``local``: for this transaction
    only. Raises :class:`LockTimeout` when it gave up waiting."""
    if never_queues_traffic(statement.sql):
        timeout_ms = 0
        _set(conn, 0, local)
    elif timeout_ms:
        _set(conn, timeout_ms, local)
    try:
        conn.execute(statement.sql.encode())
    except psycopg.errors.LockNotAvailable:
        raise LockTimeout(statement, timeout_ms) from None


def _set(conn: psycopg.Connection[Any], ms: int, local: bool) -> None:
    conn.execute("select set_config('lock_timeout', %s, %s)", (f"{ms}ms", local))


def limit(conn: psycopg.Connection[Any], policy: Policy) -> None:
    """Set the limit on the whole session, for code that runs its own
    statements on it (a callable, Alembic's ``env.py``)."""
    if policy.timeout_ms:
        _set(conn, policy.timeout_ms, local=False)


def reset(conn: psycopg.Connection[Any]) -> None:
    """Undo a session-level limit (after a ``-- no-transaction`` file)."""
    conn.execute("reset lock_timeout")


@dataclass
class Blockers:
    """Who held the lock at each failed attempt; a session seen before is said
    to have blocked since the attempt it was first seen at."""

    first_seen: dict[int, int] = field(default_factory=dict)

    def describe(
        self, conn: psycopg.Connection[Any], statement: Statement | None, attempt: int
    ) -> tuple[str, int | None]:
        """What holds the statement's tables, and the pid of its oldest holder."""
        if statement is None:
            return (
                "a session pg-supervise cannot name (it does not see the statements run): see pg_locks",
                None,
            )
        try:
            rows = conn.execute(_HOLDERS, (sorted(identifiers(statement.sql)),)).fetchall()
        except psycopg.Error as exc:  # the report must not hide the failure it is about
            return f"unknown (the report failed: {exc.diag.message_primary or type(exc).__name__})", None
        if not rows:
            return "no session holds its tables now (the lock was released, or was not a table's)", None
        for row in rows:
            self.first_seen.setdefault(row[0], attempt)
        others = len(rows) - 1
        more = f" (and {others} more session{'s' if others > 1 else ''})" if others else ""
        return self._one(attempt, *rows[0]) + more, rows[0][0]

    def _one(
        self,
        attempt: int,
        pid: int,
        locks: str,
        app: str | None,
        role: str | None,
        state: str | None,
        age: int | None,
        me: str,
    ) -> str:
        who = f"pid {pid} {app or '(no application_name)'}" + (f" (role {role})" if role else "")
        since = self.first_seen[pid]
        blocking = f", blocking since attempt {since}" if since < attempt else ""
        if state is None:  # another role's session, and this role may not see it
            return (
                f"{who} holding {locks}{blocking}; its state and transaction age are hidden from role "
                f"{me} (grant it pg_read_all_stats)"
            )
        open_for = f", in a transaction for {age} s" if age is not None else ""
        return f"{who}, {state}{open_for}, holding {locks}{blocking}"


def retry(
    conn: psycopg.Connection[Any],
    policy: Policy,
    label: str,
    attempt: Callable[[], T],
    undone: str,
) -> T:
    """Call ``attempt`` until no statement in it times out on a lock, at most
    ``policy.attempts`` times; ``attempt`` undoes its own work when it raises
    (its transaction rolls back). ``label`` names the migration in messages,
    ``undone`` says what the failure leaves behind."""
    blockers = Blockers()
    for number in range(1, policy.attempts + 1):
        try:
            return attempt()
        except LockTimeout as exc:
            held, pid = blockers.describe(conn, exc.statement, number)
            if number == policy.attempts:
                which = f"the statement at line {exc.statement.line}" if exc.statement else "a statement"
                each = f"{policy.timeout_ms} ms" if policy.timeout_ms else "the session's lock_timeout"
                if 0 < exc.timeout_ms < policy.timeout_ms / 2:  # the statements before it ran long
                    each += (
                        f" (it had {exc.timeout_ms} ms left: the statements before it in the file used the "
                        "rest; give a long statement a file of its own)"
                    )
                end = f"select pg_terminate_backend({pid})" if pid else "pg_terminate_backend(pid)"
                raise LockBudgetError(
                    f"{label}: {which} could not take its lock in {number} attempts of {each} "
                    f"(--table-lock-timeout, --table-lock-attempts); held by {held}; {undone}; run it again "
                    f"when that session is done, or end it with {end}",
                    held,
                ) from None
            delay = policy.backoff(number)
            log.warning(
                "migration gave up waiting for a lock; retrying",
                migration=label,
                line=exc.statement.line if exc.statement else None,
                attempt=number,
                attempts=policy.attempts,
                lock_timeout_ms=exc.timeout_ms,
                retry_in_s=round(delay, 2),
                held_by=held,
            )
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def retry_whole(
    conn: psycopg.Connection[Any],
    policy: Policy,
    label: str,
    run: Callable[[], T],
    undo: Callable[[], None],
) -> T:
    """:func:`retry` for code whose statements we do not see (a callable,
    Alembic): after :func:`limit`, a lock timeout anywhere in ``run`` (psycopg's,
    or one wrapped by SQLAlchemy) undoes what is open (``undo``) and runs it all
    again. A callable is idempotent by contract; Alembic re-reads its version."""

    def attempt() -> T:
        try:
            return run()
        except Exception as exc:
            if not any(isinstance(e, psycopg.errors.LockNotAvailable) for e in _chain(exc)):
                raise
            undo()
            raise LockTimeout(None, policy.timeout_ms) from exc

    return retry(conn, policy, label, attempt, "what it ran in that transaction was rolled back")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
