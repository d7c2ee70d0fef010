"""What the supervisor's connections are called in ``pg_stat_activity``, and
which fleet and host a master belongs to.

Without a fleet a connection is ``app:worker-3`` (the target's module, then its
role). In a fleet it also names the host, ``app:worker-3@web-7``, so an operator
looking at one server sees which machine each connection comes from; a fleet
given with ``--fleet`` replaces the module: ``shop:worker-3@web-7``.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.settings.config import Config

# PostgreSQL keeps the first NAMEDATALEN - 1 bytes of application_name.
MAX_BYTES = 63


def app(config: Config) -> str:
    return config.target.partition(":")[0] or "supervise"


def fleet(config: Config) -> str | None:
    """The fleet this master joins, or None (``--no-fleet``, or no ``--database-url``)."""
    if config.no_fleet or not config.database_url:
        return None
    if config.fleet:
        return config.fleet
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(config.database_url)
    except Exception:  # checked elsewhere, with a proper message; a name is all we need here
        params = {}
    dbname = params.get("dbname") or params.get("user") or "postgres"
    return f"{app(config)}/{dbname}"


def host(config: Config) -> str:
    return config.fleet_host or socket.gethostname()


def application_name(config: Config, role: str) -> str:
    """``app:role``, or ``label:role@host`` in a fleet, cut to what PostgreSQL keeps:
    the label is shortened first, so the role and the host stay readable."""
    if fleet(config) is None:
        return _cut(app(config), f":{role}")
    label = config.fleet or app(config)
    return _cut(label, f":{role}@{host(config)}")


def _cut(label: str, tail: str) -> str:
    room = MAX_BYTES - len(tail.encode())
    if room <= 0:
        return tail.encode()[:MAX_BYTES].decode("utf-8", "ignore")
    return label.encode()[:room].decode("utf-8", "ignore") + tail
