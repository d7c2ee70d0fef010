"""Every live ``Database`` object, without importing psycopg.

The master and the worker bootstrap walk this list at fork; keeping it apart
from :mod:`supervisor.database` means a supervisor without a database never
pays for importing psycopg (about 80 ms at start).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.database import Database

_registry: weakref.WeakSet[Database] = weakref.WeakSet()


def register(db: Database) -> None:
    _registry.add(db)


def databases() -> list[Database]:
    return list(_registry)


def in_use() -> list[Database]:
    """The databases a worker opens: all of them, except the supervisor's default
    one when the application declared its own ``Database()`` for the same URL."""
    dbs = databases()
    own_default = any(db._url is None and not db._is_default for db in dbs)
    return [db for db in dbs if not (db._is_default and own_default)]


def default() -> Database | None:
    """What ``worker.db`` means: the application's own ``Database()`` (no URL
    given: the configured one), else the supervisor's."""
    dbs = databases()
    for db in dbs:
        if db._url is None and not db._is_default:
            return db
    return next((db for db in dbs if db._is_default), None)
