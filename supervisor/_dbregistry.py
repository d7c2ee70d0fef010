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
