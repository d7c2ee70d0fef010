"""The migrations' one dedicated direct connection (never a pooled one: it
holds the advisory lock for the whole run)."""

from __future__ import annotations

from typing import Any

import psycopg

from supervisor import _appname
from supervisor.config import Config
from supervisor.errors import ConfigError, MigrationError
from supervisor.redact import redact_secret, scrub


def connect(config: Config, purpose: str = "migrate") -> psycopg.Connection[Any]:
    if not config.database_url:
        raise ConfigError("no database: pass --database-url or set DATABASE_URL")
    try:
        return psycopg.connect(
            config.database_url,
            autocommit=True,
            application_name=_appname.application_name(config, purpose),
            connect_timeout=10,
        )
    except psycopg.Error as exc:
        reason = scrub(str(exc).strip(), config.database_url)
        raise MigrationError(f"cannot connect to {redact_secret(config.database_url)}: {reason}") from None
