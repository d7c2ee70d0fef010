"""The connection budget: the limit every master's workers must fit in,
what one worker may hold, and the check of one master against the limit.

The limit is ``--max-db-connections``, else what the server lets
non-superusers open, less ``--spare-db-connections``. A worker may hold every
pool it opens at its maximum; a master needs ``workers x that + 1`` (its
migration connection). In a fleet (``fleet.py``) the same check runs beside
every other live reservation, in one locked transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from supervisor.database import registry
from supervisor.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

    from supervisor.settings.config import Config


class Seat(Protocol):
    """This master's reservation in its fleet (:class:`~supervisor.database.fleet.Member`),
    as the budget and the master's loop use it."""

    joined: bool
    next_refresh: float

    def reserve(self, workers: int, config: Config) -> None: ...

    def refresh_if_due(self, now: float, config: Config) -> None: ...

    def leave(self) -> None: ...

    def describe(self, now: float) -> dict[str, object]: ...


@dataclass(frozen=True)
class Budget:
    """The connection limit the workers must fit in, where it came from, and
    this master's seat in its fleet (None with --no-fleet)."""

    limit: int
    how: str
    member: Seat | None = None

    def check(self, workers: int, config: Config) -> None:
        """Raise ConfigError if ``workers`` workers, every pool at its maximum,
        plus the migration connection, could exceed the limit; in a fleet,
        beside every other live reservation, and then hold them (one step)."""
        if self.member is not None:
            self.member.reserve(workers, config)
        else:
            check_alone(workers, per_worker_connections(config), self.limit, self.how)


def server_limit(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    """What the server lets non-superusers open, and how that was worked out."""
    settings = dict(
        conn.execute(
            "select name, setting from pg_settings where name in "
            "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
        ).fetchall()
    )
    total = int(settings["max_connections"])
    reserved = sum(
        int(settings.get(k, 0)) for k in ("superuser_reserved_connections", "reserved_connections")
    )
    return total - reserved, f"max_connections {total} less {reserved} reserved"


def limit_for(conn: psycopg.Connection[Any], config: Config) -> tuple[int, str]:
    """The limit the budget is checked against, and where it came from:
    ``--max-db-connections``, else what the server allows; less
    ``--spare-db-connections``."""
    if config.max_db_connections is not None:
        limit, how = config.max_db_connections, "--max-db-connections"
    else:
        limit, how = server_limit(conn)
    if config.spare_db_connections:
        spare = config.spare_db_connections
        limit, how = limit - spare, f"{how}, less {spare} spare (--spare-db-connections)"
    return limit, how


def per_worker_connections(config: Config) -> int:
    """Connections one worker may hold: every pool it will open, at its maximum.
    (Databases first declared by a module that only workers import are not
    known in the master; see docs/database.md.)"""
    sizes = [db.max_size or config.pool_max_size for db in registry.in_use()]
    return max(sum(sizes), config.pool_max_size)


def check_alone(workers: int, per_worker: int, limit: int, how: str) -> None:
    """Raise ConfigError when ``workers`` workers with ``per_worker`` connections
    each (their pools at maximum), plus the migration connection, could exceed
    ``limit``."""
    need = workers * per_worker + 1
    if need > limit:
        raise ConfigError(
            f"connection budget exceeded: {workers} workers x pool max size {per_worker} "
            f"+ 1 (migrations) = {need} > {limit} ({how}); lower --workers or --pool-max-size, "
            "or raise --max-db-connections if the server allows more"
        )
