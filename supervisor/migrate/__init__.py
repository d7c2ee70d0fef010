"""Migrations, exactly once, before any worker forks.

``--migrations`` names a directory of ``NNNN_name.sql`` files, a
``module:callable`` called with the locked connection, or
``alembic:PATH/alembic.ini``. Each kind is one module with
``run(config, spec, dry_run) -> list[str]`` and ``check(spec)`` (what can fail
without the database), listed in :data:`MIGRATORS`. All
run on one dedicated direct connection holding the advisory lock
(:mod:`supervisor.migrate.lock`), so any number of masters on any number of
hosts apply each migration once; the applied set is read *after* the lock is
taken.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.errors import ConfigError, SupervisorError
from supervisor.logging import get_logger
from supervisor.settings.config import Config

if TYPE_CHECKING:
    from supervisor.migrate import unsafe
    from supervisor.migrate.sqldir import Row

log = get_logger()

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_callable_spec(spec: str) -> bool:
    return bool(_CALLABLE.match(spec)) and not Path(spec).exists()


@dataclass(frozen=True)
class Migrator:
    name: str
    module: str  # defines run(config, spec, dry_run) -> list[str] and check(spec) -> versions
    handles: Callable[[str], bool]  # does this --migrations value name this kind?


# first match wins: a directory is whatever is not one of the others
MIGRATORS: tuple[Migrator, ...] = (
    Migrator("alembic", "supervisor.migrate.alembic", lambda spec: spec.startswith("alembic:")),
    Migrator("callable", "supervisor.migrate.callable", is_callable_spec),
    Migrator("sqldir", "supervisor.migrate.sqldir", lambda spec: True),
)


def migrator_for(spec: str) -> Migrator:
    return next(m for m in MIGRATORS if m.handles(spec))


def check(config: Config) -> tuple[int, ...] | None:
    """Check what can fail about ``--migrations`` without the database (a
    missing directory, a misnamed or unreadable file, a callable's missing
    module, Alembic not installed), before anything is written to it. Returns
    the versions this code has (a SQL directory's; None for the other kinds),
    which its fleet row records for contract migrations. With --no-migrate a
    failure is only a warning: nothing is applied here."""
    spec = config.migrations
    if not spec:
        return None
    check_kind: Callable[[str], tuple[int, ...] | None] = importlib.import_module(
        migrator_for(spec).module
    ).check
    try:
        return check_kind(spec)
    except SupervisorError as exc:
        if config.migrate:
            raise
        log.warning(
            "--no-migrate: the migrations cannot be read; the fleet counts this code as old", error=str(exc)
        )
        return None


def run(config: Config, *, dry_run: bool = False) -> list[str]:
    """Apply pending migrations under the lock; return what was (or would be) applied."""
    spec = config.migrations
    if not spec:
        return []
    run_kind: Callable[[Config, str, bool], list[str]] = importlib.import_module(
        migrator_for(spec).module
    ).run
    return run_kind(config, spec, dry_run)


def _sqldir(config: Config, what: str) -> str:
    if not config.migrations or migrator_for(config.migrations).name != "sqldir":
        raise ConfigError(f"migrations: {what} needs a SQL directory (--migrations DIR)")
    return config.migrations


def status(config: Config) -> list[Row]:
    """Applied, pending, edited and orphaned migrations (a SQL directory only)."""
    _sqldir(config, "--status")
    from supervisor.migrate import sqldir

    return sqldir.status(config)


def unsafe_findings(config: Config) -> tuple[list[unsafe.Finding], int]:
    """The unsafe operations in the pending files (a SQL directory only), and
    how many files were checked; ConfigError without pglast."""
    spec = _sqldir(config, "--check")
    from supervisor.migrate import sqldir

    return sqldir.check_pending(config, spec)


def accept_edit(config: Config, version: int) -> None:
    """Record the current checksum of an applied, edited migration."""
    _sqldir(config, "--accept-edit")
    from supervisor.migrate import sqldir

    sqldir.accept_edit(config, version)
