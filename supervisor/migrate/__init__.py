"""Migrations, exactly once, before any worker forks.

``--migrations`` names a directory of ``NNNN_name.sql`` files, a
``module:callable`` called with the locked connection, or
``alembic:PATH/alembic.ini``. Each kind is one module with
``run(config, spec, dry_run) -> list[str]``, listed in :data:`MIGRATORS`. All
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

from supervisor.errors import ConfigError
from supervisor.settings.config import Config

if TYPE_CHECKING:
    from supervisor.migrate.sqldir import Row

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_callable_spec(spec: str) -> bool:
    return bool(_CALLABLE.match(spec)) and not Path(spec).exists()


@dataclass(frozen=True)
class Migrator:
    name: str
    module: str  # defines run(config, spec, dry_run) -> list[str]
    handles: Callable[[str], bool]  # does this --migrations value name this kind?


# first match wins: a directory is whatever is not one of the others
MIGRATORS: tuple[Migrator, ...] = (
    Migrator("alembic", "supervisor.migrate.alembic", lambda spec: spec.startswith("alembic:")),
    Migrator("callable", "supervisor.migrate.callable", is_callable_spec),
    Migrator("sqldir", "supervisor.migrate.sqldir", lambda spec: True),
)


def migrator_for(spec: str) -> Migrator:
    return next(m for m in MIGRATORS if m.handles(spec))


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


def accept_edit(config: Config, version: int) -> None:
    """Record the current checksum of an applied, edited migration."""
    _sqldir(config, "--accept-edit")
    from supervisor.migrate import sqldir

    sqldir.accept_edit(config, version)
