"""The fleet-wide budget's settings, as the keywords of their ``_setting(...)``
fields in :class:`supervisor.config.Config` (kept here so config.py stays
small; config.py is still where every setting is a field)."""

from __future__ import annotations

from typing import Any

SPARE_DB_CONNECTIONS: dict[str, Any] = {
    "default": 0,
    "flags": ("--spare-db-connections",),
    "kind": "int",
    "minimum": 0,
    "maximum": 262_143,  # PostgreSQL's own maximum for max_connections
    "metavar": "N",
    "group": "Database",
    "help": "Connections of the limit kept free for clients outside the budget (psql, cron jobs, "
    "other services, a reload's extra workers): the budget is the limit less N.",
}
FLEET: dict[str, Any] = {
    "default": None,
    "flags": ("--fleet",),
    "kind": "str",
    "metavar": "NAME",
    "group": "Fleet",
    "help": "Fleet this master joins: every master on every host that uses the database counts "
    "toward one connection budget, recorded in the table supervise_fleet.",
    "default_doc": "TARGET's module and the database name (app/shop)",
}
NO_FLEET: dict[str, Any] = {
    "default": False,
    "flags": ("--no-fleet",),
    "kind": "bool",
    "group": "Fleet",
    "help": "Do not join a fleet: the budget counts this master alone, and nothing is written.",
}
FLEET_HOST: dict[str, Any] = {
    "default": None,
    "flags": ("--fleet-host",),
    "kind": "str",
    "metavar": "NAME",
    "group": "Fleet",
    "help": "This master's host in the fleet and in application_name.",
    "default_doc": "the host name",
}
FLEET_LEASE: dict[str, Any] = {
    "default": 10.0,
    "flags": ("--fleet-lease",),
    "kind": "float",
    "minimum": 3,
    "maximum": 3600,
    "metavar": "S",
    "group": "Fleet",
    "help": "A master's reservation stops counting S seconds after its last renewal (a master "
    "that died, a host that vanished); it is renewed every S/3 seconds.",
}
