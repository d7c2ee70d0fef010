"""The run-once lock: a session advisory lock taken by *polling*.

A blocking ``pg_advisory_lock`` waiter holds a snapshot that
``CREATE INDEX CONCURRENTLY`` in the holder waits for: a deadlock (Flyway
#1654, golang-migrate #960). Polling ``pg_try_advisory_lock`` between short
sleeps holds nothing while waiting. The lock is on a dedicated direct
connection and dies with its session, so a crashed migrator never leaves it
stuck.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from supervisor.errors import MigrationError
from supervisor.logging import get_logger

log = get_logger()

LOCK_KEY = int.from_bytes(
    hashlib.blake2b(b"pg-supervise:migrations", digest_size=8).digest(), "big", signed=True
)
LOG_EVERY = 5.0


def holder(conn: psycopg.Connection[Any], key: int = LOCK_KEY) -> str:
    """Who holds the lock, for log lines: 'pid 123 app:migrate (role deploy) from
    10.0.0.5:5123, connected 42 s ago'. Only what the server shows is said:
    another role's address and start time are hidden from a role that is not a
    member of it or of pg_read_all_stats, and a local socket has no address."""
    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    row = conn.execute(
        "select a.pid, a.application_name, a.usename, a.backend_start is not null, "
        "host(a.client_addr), a.client_port, "
        "extract(epoch from now() - a.backend_start)::int, current_user "
        "from pg_locks l join pg_stat_activity a using (pid) "
        "where l.locktype = 'advisory' and l.granted and l.classid = %s and l.objid = %s "
        "and l.objsubid = 1 "
        "and l.database = (select oid from pg_database where datname = current_database())",
        (classid, objid),
    ).fetchone()
    if row is None:
        return "nobody (just released)"
    pid, app, role, visible, addr, port, age, me = row
    who = f"pid {pid} {app or '(no application_name)'}" + (f" (role {role})" if role else "")
    if not visible:
        return f"{who}; its address and connection time are hidden from role {me}"
    where = (f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}") if addr else "a local socket"
    return f"{who} from {where}, connected {age} s ago"


@contextmanager
def advisory_lock(conn: psycopg.Connection[Any], timeout: float, key: int = LOCK_KEY) -> Iterator[None]:
    """Hold the migration lock on ``conn`` (autocommit) for the block; released
    in all cases. Raises :class:`MigrationError` after ``timeout`` seconds."""
    started = time.monotonic()
    next_log = started + 1.0
    delay = 0.05
    while not conn.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
        now = time.monotonic()
        if now - started >= timeout:
            raise MigrationError(
                f"the migration lock is held by {holder(conn, key)}; gave up after waiting "
                f"{timeout:g} s (--migration-lock-timeout)"
            )
        if now >= next_log:
            log.info(
                "waiting for the migration lock", held_by=holder(conn, key), waited_s=round(now - started, 1)
            )
            next_log = now + LOG_EVERY
        time.sleep(min(delay * random.uniform(0.5, 1.5), max(0.0, started + timeout - now)))
        delay = min(delay * 2, 0.5)
    waited = time.monotonic() - started
    if waited > 0.5:
        log.info("migration lock acquired", waited_s=round(waited, 2))
    try:
        yield
    finally:
        _release(conn, key)


@contextmanager
def held_if_free(conn: psycopg.Connection[Any], key: int = LOCK_KEY) -> Iterator[bool]:
    """The lock for the block if nobody holds it, without waiting (the master's
    loop must not wait); False, and nothing held, if somebody does."""
    if not conn.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
        yield False
        return
    try:
        yield True
    finally:
        _release(conn, key)


def _release(conn: psycopg.Connection[Any], key: int) -> None:
    """Unlock even after a failed migration left the session in a failed
    transaction; if that is impossible, closing the session releases it."""
    if conn.closed:
        return
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        conn.execute("select pg_advisory_unlock(%s)", (key,))
        if not conn.autocommit:
            conn.commit()
    except psycopg.Error as exc:
        log.warning(
            "could not release the migration lock; closing its connection instead", error=str(exc).strip()
        )
        conn.close()
