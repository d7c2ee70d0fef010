"""Fork-safe SQLAlchemy engines (``postgresql+psycopg://``).

An engine's pool is a set of open connections; inherited across ``fork()``,
two processes would share each socket. Importing this module makes every
engine that connects afterwards take part in the fork guard, and
:func:`track` adds one explicitly (say, an engine that connected before the
import):

* in the master, before each fork: ``engine.dispose()`` closes its pooled
  connections (before the guard's sweep, so they are not reported as strays);
* first thing in a worker: ``engine.dispose(close=False)`` swaps in a new,
  empty pool without touching the inherited connections (closing one would
  send Terminate on the master's session);
* when a worker stops: ``engine.dispose()`` closes the worker's own
  connections, so the server sees a normal disconnection.

This works under ``supervise`` and under the gunicorn helper, which both run
the fork guard. A connection that is *checked out* in the master at fork is
not in the pool; the guard's sweep still finds and closes it, with a warning.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from supervisor.database import fork_guard
from supervisor.logging import get_logger

__all__ = ["track", "tracked"]

log = get_logger()

# engine -> the process whose connections its pool holds: set when first seen,
# and in a child when the inherited pool is dropped
_engines: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def track(engine: Any) -> Any:
    """Make ``engine`` (an ``Engine`` or an ``AsyncEngine``) fork-safe; returns it.

    Engines that connect after this module was imported are tracked without
    this call; it is needed only for one that connected before.
    """
    sync = getattr(engine, "sync_engine", engine)
    if not isinstance(sync, Engine):
        raise TypeError(f"track() takes a SQLAlchemy Engine or AsyncEngine, not {type(engine).__name__}")
    _engines.setdefault(sync, os.getpid())
    return engine


def tracked() -> list[Engine]:
    """The engines the fork guard currently handles."""
    return list(_engines.keys())


def _on_connect(conn: Connection) -> None:
    _engines.setdefault(conn.engine, os.getpid())


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _is_async(engine: Engine) -> bool:
    return bool(getattr(engine.dialect, "is_async", False))


def _before_fork() -> None:
    for engine in tracked():
        if _is_async(engine):
            # Closing an async connection needs its event loop, which the master
            # is not running; drop the pool instead and let the sweep finish
            # (and report) the connections it held.
            engine.dispose(close=False)
            continue
        checked_in = engine.pool.checkedin() if hasattr(engine.pool, "checkedin") else 0
        engine.dispose()
        if checked_in:
            log.info(
                "closed a SQLAlchemy engine's pooled connections before fork",
                engine=_describe(engine),
                connections=checked_in,
            )


def _after_fork() -> None:
    pid = os.getpid()
    for engine in tracked():
        engine.dispose(close=False)
        _engines[engine] = pid


def _worker_exit() -> None:
    pid = os.getpid()
    for engine in tracked():
        # never an engine whose pool may still hold a parent's connections
        if _engines.get(engine) == pid and not _is_async(engine):
            engine.dispose()


event.listen(Engine, "engine_connect", _on_connect)
fork_guard.register(
    fork_guard.Participant(
        "sqlalchemy", before_fork=_before_fork, after_fork=_after_fork, worker_exit=_worker_exit
    )
)
