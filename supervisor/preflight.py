"""The database steps before the first fork: wait for PostgreSQL, check the
connection budget, migrate once. The master and the gunicorn helper both run
exactly these, in this order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from supervisor import database
from supervisor.config import Config
from supervisor.logging import get_logger

log = get_logger()


@dataclass(frozen=True)
class Budget:
    """The connection limit the workers must fit in, and where it came from."""

    limit: int
    how: str

    def check(self, workers: int, config: Config) -> None:
        """Raise ConfigError if ``workers`` workers, every pool at its maximum,
        plus the migration connection, could exceed the limit."""
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


def run(
    config: Config,
    workers: int,
    *,
    before_migrate: Callable[[], None] | None = None,
    after_migrate: Callable[[], None] | None = None,
) -> tuple[Budget, str]:
    """All of it, in order: a failure raises before anything is forked."""
    limit = budget(config)
    limit.check(workers, config)
    return limit, migrate(config, before_migrate, after_migrate)
