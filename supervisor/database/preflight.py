"""The database steps before the first fork: wait for PostgreSQL, check the
connection budget (alone, or in the fleet), migrate once. The master and the
gunicorn helper both run exactly these, in this order (:func:`run`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import psycopg

from supervisor.database import appname, budget, url_check
from supervisor.database.budget import Budget
from supervisor.errors import ConfigError, DatabaseUnavailableError
from supervisor.logging import get_logger
from supervisor.redact import redact_secret, scrub

if TYPE_CHECKING:
    from supervisor.settings.config import Config

log = get_logger()


def wait_for_server(config: Config) -> psycopg.Connection[Any]:
    """Connect to ``--database-url``, retrying with backoff for ``--db-wait-timeout``
    seconds; the caller owns (and closes) the returned connection."""
    assert config.database_url
    url, started, delay, attempt = config.database_url, time.monotonic(), 0.25, 0
    app = appname.application_name(config, "master")
    while True:
        attempt += 1
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name=app)
        except psycopg.Error as exc:
            reason = url_check.cause(scrub(str(exc), url)) or type(exc).__name__
            if not isinstance(exc, psycopg.OperationalError):  # a malformed URL, say
                raise ConfigError(f"database URL {redact_secret(url)} is not usable: {reason}") from None
            # Waiting cures a server that is down, starting or full, not a wrong
            # password, role, database name or setting: those fail at once.
            if not url_check.retryable(str(exc), exc.sqlstate):
                state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
                refused = "FATAL" in str(exc) or exc.sqlstate is not None
                raise ConfigError(
                    f"PostgreSQL at {redact_secret(url)} refused the connection: {reason}{state}"
                    if refused
                    else f"database URL {redact_secret(url)} is not usable: {reason} "
                    "(not retried: waiting would not change it)"
                ) from None
            waited = time.monotonic() - started
            if waited + delay > config.db_wait_timeout:
                raise DatabaseUnavailableError(
                    f"PostgreSQL at {redact_secret(url)} did not accept connections within "
                    f"{config.db_wait_timeout:g} s (--db-wait-timeout): {reason}"
                ) from None
            log.warning(
                "waiting for PostgreSQL",
                url=redact_secret(url),
                attempt=attempt,
                retry_in_s=round(delay, 2),
                error=reason,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def server_budget(config: Config) -> Budget:
    """Wait for the server (up to --db-wait-timeout), then read its limit."""
    with wait_for_server(config) as conn:
        return Budget(*budget.limit_for(conn, config))


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


def _join(limit: Budget, config: Config, workers: int, migrations: tuple[int, ...] | None) -> Budget:
    """Reserve this master's place in its fleet, recording the migrations its
    code has. A role that may not create the fleet's table only loses the
    fleet (with a warning), unless --fleet asked for it."""
    from supervisor.database.fleet import Member, NoTableError

    joined = replace(limit, member=Member(config, migrations))
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
    gives back the fleet reservation it took). What can fail without the
    database (the migrations' directory) fails before the first write."""
    from supervisor import migrate as migrations

    versions = migrations.check(config)
    limit = server_budget(config)
    if appname.fleet(config) is not None:
        limit = _join(limit, config, workers, versions)
    else:
        limit.check(workers, config)
    try:
        return limit, migrate(config, before_migrate, after_migrate)
    except BaseException:
        if limit.member is not None:
            limit.member.leave()
        raise
