"""The fork guard: the master holds no PostgreSQL connection and no pool
thread at the moment of any fork.

Before each fork the master closes the pools its own ``Database`` objects
opened, then sweeps the heap for psycopg connections and pools that user code
opened in the master (say, at import with ``--preload``), closes them and
warns, naming each without its password. The sweep only walks objects the
collector tracks: after ``gc.freeze()`` (preload) the frozen heap is skipped,
so it costs a full walk once and almost nothing on later forks.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor.database.registry import databases
from supervisor.logging import get_logger
from supervisor.redact import redact_secret

log = get_logger()

_seen: weakref.WeakSet[Any] = weakref.WeakSet()


@dataclass(frozen=True)
class Participant:
    """Another owner of connections that takes part in the fork guard (an
    integration such as :mod:`supervisor.integrations.sqlalchemy`).

    ``before_fork`` runs in the master before the sweep, so what it closes
    cleanly is not reported as a stray; ``after_fork`` runs first thing in a
    child and must not do I/O on anything inherited; ``worker_exit`` runs in a
    stopping worker, after its pools closed.
    """

    name: str
    before_fork: Callable[[], None]
    after_fork: Callable[[], None]
    worker_exit: Callable[[], None] | None = None


_participants: dict[str, Participant] = {}
_warned_threads: set[str] = set()  # each thread is named once, not at every fork


def register(participant: Participant) -> None:
    """Add (or replace, by name) a participant; idempotent, so a module
    re-imported on reload does not run twice."""
    _participants[participant.name] = participant


def before_fork() -> list[str]:
    """Close what the master holds and warn about its other threads; return a
    description of each stray object."""
    for db in databases():
        db._close()
    for participant in list(_participants.values()):
        participant.before_fork()
    _warn_threads()
    return sweep()


def _warn_threads() -> None:
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and thread.name not in _warned_threads:
            _warned_threads.add(thread.name)
            log.warning(
                "a thread is running in the master at fork; it will not exist in "
                "workers and may hold locks they need",
                thread=thread.name,
            )


def sweep() -> list[str]:
    if "psycopg" not in sys.modules:
        return []  # nothing could have opened a connection
    import psycopg

    pool_types: tuple[type, ...] = ()
    if "psycopg_pool" in sys.modules:
        import psycopg_pool

        pool_types = (psycopg_pool.ConnectionPool, psycopg_pool.AsyncConnectionPool)
    found = []
    conn_types = (psycopg.Connection, psycopg.AsyncConnection)
    # gc.get_objects() skips frozen objects, so remember every pool or connection
    # ever seen (opened or not): one made before a freeze and opened later in a
    # hook is still checked.
    candidates = list(_seen)
    for obj in gc.get_objects():
        if (pool_types and isinstance(obj, pool_types)) or isinstance(obj, conn_types):
            candidates.append(obj)
            with contextlib.suppress(TypeError):
                _seen.add(obj)
    for obj in {id(o): o for o in candidates}.values():
        if pool_types and isinstance(obj, pool_types):
            if not _any(obj).closed:
                found.append(_close_pool(obj))
        elif isinstance(obj, conn_types) and not _any(obj).closed:
            found.append(_close_connection(obj))
    return found


def _any(obj: object) -> Any:
    return obj


def _close_pool(pool: Any) -> str:
    what = f"pool {pool.name!r} ({redact_secret(str(pool.conninfo))})"
    import psycopg_pool

    if isinstance(pool, psycopg_pool.ConnectionPool):
        pool.close(timeout=1.0)
        log.warning(
            "closed a connection pool open in the master before fork; open pools in "
            "workers (supervisor.Database) instead",
            pool=what,
        )
    else:
        # An async pool belongs to an event loop the master is not running; it
        # cannot be closed from here. Workers will drop it without I/O.
        log.warning(
            "an async connection pool is open in the master at fork; workers must not "
            "use it (open pools inside workers instead)",
            pool=what,
        )
    return what


def _close_connection(conn: Any) -> str:
    what = f"connection ({redact_secret(conn.info.dsn)})"
    # finish() is synchronous for both kinds of connection and sends Terminate,
    # which is right here: this process made the connection.
    conn.pgconn.finish()
    log.warning(
        "closed a PostgreSQL connection open in the master before fork; workers must "
        "not inherit it: open connections inside workers (db.pool)",
        connection=what,
    )
    return what


def after_fork_in_child() -> None:
    """Forget everything inherited, without I/O (a close() here would end the
    master's session)."""
    for db in databases():
        db._drop_inherited()
    for participant in list(_participants.values()):
        participant.after_fork()


def worker_exiting() -> None:
    """In a stopping worker: close its pools, then let participants close what
    they opened here."""
    for db in databases():
        try:
            db._close()
        except Exception:
            log.exception("closing a database pool failed", database=db.name)
    for participant in list(_participants.values()):
        if participant.worker_exit is not None:
            try:
                participant.worker_exit()
            except Exception:
                log.exception("closing connections failed", owner=participant.name)
