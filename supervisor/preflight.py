"""The database steps before the first fork: wait for PostgreSQL, check the
connection budget, migrate once. The master and the gunicorn helper both run
exactly these, in this order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from supervisor import _appname, database
from supervisor.config import Config
from supervisor.logging import get_logger

if TYPE_CHECKING:
    from supervisor.fleet import Member

log = get_logger()


@dataclass(frozen=True)
class Budget:
    """The connection limit the workers must fit in, where it came from, and
    this master's place in its fleet (None with --no-fleet)."""

    limit: int
    how: str
    member: Member | None = None

    def check(self, workers: int, config: Config) -> None:
        """Raise ConfigError if ``workers`` workers, every pool at its maximum,
        plus the migration connection, could exceed the limit; in a fleet,
        beside every other live reservation, and then hold them (one step)."""
        if self.member is not None:
            self.member.reserve(workers, config)
        else:
            database.check_budget(workers, database.per_worker_connections(config), self.limit, self.how)


def budget(config: Config) -> Budget:
    """Wait for the server (up to --db-wait-timeout), then read its limit."""
    with database.wait_for_server(config) as conn:
        return Budget(*database.connection_budget(conn, config))


def migrate(
    config: Config,
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
) -> str:
    """Run the migrations once (under the advisory lock); say what happened,
    as /readyz reports it."""
    if not config.migrations:
        return "none"
    if not config.migrate:
        return "skipped (--no-migrate)"
    from supervisor import migrate as migrations

    if before is not None:
        before()
    applied = migrations.run(config)
    log.info("migrations done", applied=len(applied))
    if after is not None:
        after()
    return f"applied {len(applied)}" if applied else "up to date"


def _join(limit: Budget, config: Config, workers: int) -> Budget:
    """Reserve this master's place in its fleet. A role that may not create the
    fleet's table only loses the fleet (with a warning), unless --fleet asked for it."""
    from supervisor.fleet import Member, NoTableError

    joined = replace(limit, member=Member(config))
    try:
        joined.check(workers, config)
    except NoTableError as exc:
        if config.fleet:
            raise
        log.warning("the connection budget counts this master alone", reason=str(exc))
        limit.check(workers, config)
        return limit
    return joined


def run(
    config: Config,
    workers: int,
    *,
    before_migrate: Callable[[], None] | None = None,
    after_migrate: Callable[[], None] | None = None,
) -> tuple[Budget, str]:
    """All of it, in order: a failure raises before anything is forked (and
    gives back the fleet reservation it took)."""
    limit = budget(config)
    if _appname.fleet(config) is not None:
        limit = _join(limit, config, workers)
    else:
        limit.check(workers, config)
    try:
        return limit, migrate(config, before_migrate, after_migrate)
    except BaseException:
        if limit.member is not None:
            limit.member.leave()
        raise
