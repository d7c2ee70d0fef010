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

# in creation order, so "the first Database() declared" is well defined
_registry: list[weakref.ref[Database]] = []


def register(db: Database) -> None:
    _registry[:] = [ref for ref in _registry if ref() is not None]
    _registry.append(weakref.ref(db))


def databases() -> list[Database]:
    return [db for db in (ref() for ref in _registry) if db is not None]


def in_use() -> list[Database]:
    """The databases a worker opens: all of them, except the supervisor's default
    one when the application declared its own ``Database()`` for the same URL."""
    dbs = databases()
    own_default = any(db._url is None and not db._is_default for db in dbs)
    return [db for db in dbs if not (db._is_default and own_default)]


def default() -> Database | None:
    """What ``worker.db`` means: the application's first ``Database()`` declared
    without a URL (so, the configured one), else the supervisor's."""
    dbs = databases()
    for db in dbs:
        if db._url is None and not db._is_default:
            return db
    return next((db for db in dbs if db._is_default), None)
