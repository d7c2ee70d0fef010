"""``--migrations module:callable``: called once with the locked connection."""

from __future__ import annotations

import importlib
from typing import Any

import psycopg

from supervisor.errors import MigrationError, TargetError
from supervisor.logging import get_logger
from supervisor.migrate import lockqueue
from supervisor.migrate.connection import connect
from supervisor.migrate.lock import advisory_lock
from supervisor.settings.config import Config
from supervisor.target import check_importable

log = get_logger()


def check(spec: str) -> None:
    """Its module can be found (not imported: that runs the user's code)."""
    try:
        check_importable(spec)
    except TargetError as exc:
        raise TargetError(f"migrations {spec!r}: {exc}") from None


def run(config: Config, spec: str, dry_run: bool) -> list[str]:
    module_name, _, attr = spec.partition(":")
    try:
        fn: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as exc:
        raise TargetError(f"migrations {spec!r} could not be loaded: {exc}") from exc
    if dry_run:
        log.info("migrations: a callable cannot be dry-run; it would be called", callable=spec)
        return [spec]
    policy = lockqueue.Policy.of(config)
    with connect(config) as conn, advisory_lock(conn, config.migration_lock_timeout):
        log.info("running migration callable", callable=spec)
        lockqueue.limit(conn, policy)

        def undo() -> None:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()

        try:
            lockqueue.retry_whole(conn, policy, f"migration callable {spec}", lambda: fn(conn), undo)
        except MigrationError:
            raise
        except psycopg.Error as exc:
            raise MigrationError(f"migration callable {spec} failed: {str(exc).strip()}") from exc
        except Exception as exc:
            raise MigrationError(f"migration callable {spec} raised {type(exc).__name__}: {exc}") from exc
    return [spec]
