"""The migrations' one dedicated direct connection (never a pooled one: it
holds the advisory lock for the whole run)."""

from __future__ import annotations

from typing import Any

import psycopg

from supervisor.database import appname
from supervisor.errors import ConfigError, DatabaseUnavailableError
from supervisor.redact import redact_secret, scrub
from supervisor.settings.config import Config


def connect(config: Config, purpose: str = "migrate", connect_timeout: int = 10) -> psycopg.Connection[Any]:
    if not config.database_url:
        raise ConfigError("no database: pass --database-url or set DATABASE_URL")
    try:
        return psycopg.connect(
            config.database_url,
            autocommit=True,
            application_name=appname.application_name(config, purpose),
            connect_timeout=connect_timeout,
        )
    except psycopg.Error as exc:
        reason = scrub(str(exc).strip(), config.database_url)
        # the server is away, or refuses: the caller may try again later (contract.py does)
        raise DatabaseUnavailableError(
            f"cannot connect to {redact_secret(config.database_url)}: {reason}"
        ) from None
