"""Alembic adapter: ``--migrations alembic:path/to/alembic.ini``.

Alembic has no lock of its own, so concurrent ``alembic upgrade head`` runs
race. Here the upgrade runs on a connection that holds our advisory lock, and
that connection is handed to ``env.py`` as ``config.attributes["connection"]``
(Alembic's documented way to share a connection). An ``env.py`` that uses it
runs inside the lock on that very session; one that builds its own engine still
runs while the lock is held, so each revision is still applied once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import psycopg

from supervisor.errors import ConfigError, MigrationError
from supervisor.logging import get_logger
from supervisor.migrate import lockqueue
from supervisor.migrate.lock import advisory_lock
from supervisor.settings.config import Config

log = get_logger()


def check(spec: str) -> None:
    """Alembic is installed and ``spec`` names a file."""
    ini = spec.removeprefix("alembic:")
    if importlib.util.find_spec("alembic") is None or importlib.util.find_spec("sqlalchemy") is None:
        raise ConfigError("migrations: Alembic is not installed; pip install 'pg-supervise[alembic]'")
    if not Path(ini).is_file():
        raise ConfigError(f"migrations: {ini} is not a file (expected alembic:PATH/alembic.ini)")


def run(config: Config, spec: str, dry_run: bool) -> list[str]:
    """``spec`` is ``alembic:PATH/alembic.ini``."""
    check(spec)
    import sqlalchemy
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    path = Path(spec.removeprefix("alembic:"))
    assert config.database_url
    url = config.database_url
    app = config.target.partition(":")[0] or "supervise"

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(url, application_name=f"{app}:migrate", connect_timeout=10)

    cfg = AlembicConfig(str(path))
    script = ScriptDirectory.from_config(cfg)
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=connect, poolclass=sqlalchemy.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            # Poll for the lock outside any transaction: a waiter idle in a
            # transaction would hold up CREATE INDEX CONCURRENTLY in the holder.
            raw.autocommit = True
            with advisory_lock(raw, config.migration_lock_timeout):
                policy = lockqueue.Policy.of(config)
                lockqueue.limit(raw, policy)  # env.py's statements run on this session
                raw.autocommit = False
                current = set(MigrationContext.configure(conn).get_current_heads())
                pending = _pending(script, current)
                if dry_run or not pending:
                    log.info(
                        "migrations up to date" if not pending else "migrations pending",
                        pending=pending,
                        current=sorted(current),
                    )
                    conn.rollback()
                    return pending
                log.info("applying alembic migrations", current=sorted(current), head=script.get_heads())
                cfg.attributes["connection"] = conn

                def upgrade() -> None:
                    command.upgrade(cfg, "head")
                    conn.commit()

                try:
                    lockqueue.retry_whole(raw, policy, "alembic upgrade", upgrade, conn.rollback)
                except MigrationError:
                    raise
                except Exception as exc:
                    conn.rollback()
                    raise MigrationError(
                        f"alembic upgrade failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                    ) from exc
                return pending
    finally:
        engine.dispose()


def _pending(script: Any, current: set[str]) -> list[str]:
    """Revisions between the database's current heads and the script heads, oldest first."""
    if current == set(script.get_heads()):
        return []
    applied: set[str] = set()
    for head in current:  # everything at or below a current head is applied
        applied.update(r.revision for r in script.iterate_revisions(head, "base"))
    return [r.revision for r in reversed(list(script.walk_revisions())) if r.revision not in applied]
