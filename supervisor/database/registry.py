"""Every live ``Database`` object, without importing psycopg.

The master and the worker bootstrap walk this list at fork; keeping it apart
from :mod:`supervisor.database.pools` (and so psycopg) means a supervisor without a database never
pays for importing psycopg (about 80 ms at start).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from supervisor.settings.config import Config
    from supervisor.worker.admission import Admission


class Database(Protocol):
    """What the supervisor does with a :class:`supervisor.database.pools.Database`
    (declared here, below it, so this module never imports psycopg)."""

    name: str

    @property
    def explicit_url(self) -> str | None: ...

    @property
    def is_default(self) -> bool: ...

    @property
    def max_size(self) -> int | None: ...

    def stats(self) -> dict[str, int]: ...

    def snapshot(self) -> dict[str, int]: ...

    def _open(self, worker_id: int, config: Config, on_unreachable: Callable[[], None]) -> None: ...

    async def _open_async(
        self,
        worker_id: int,
        config: Config,
        on_unreachable: Callable[[], None],
        admission: Admission | None = None,
    ) -> None: ...

    async def _close_async(self, timeout: float = 5.0) -> None: ...

    def _close(self, timeout: float = 5.0) -> None: ...

    def _drop_inherited(self) -> None: ...


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
    own_default = any(db.explicit_url is None and not db.is_default for db in dbs)
    return [db for db in dbs if not (db.is_default and own_default)]


def default() -> Database | None:
    """What ``worker.db`` means: the application's first ``Database()`` declared
    without a URL (so, the configured one), else the supervisor's."""
    dbs = databases()
    for db in dbs:
        if db.explicit_url is None and not db.is_default:
            return db
    return next((db for db in dbs if db.is_default), None)
