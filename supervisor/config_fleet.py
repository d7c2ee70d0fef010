"""Settings of the fleet-wide connection budget (docs/deploy/capacity.md).

Declared once here; config.py gathers every group into :class:`~supervisor.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor._setting import MAX_DB_CONNECTIONS, _setting


@dataclass(frozen=True, kw_only=True)
class FleetSettings:
    spare_db_connections: int = _setting(
        0,
        flags=("--spare-db-connections",),
        kind="int",
        minimum=0,
        maximum=MAX_DB_CONNECTIONS,
        metavar="N",
        group="Database",
        help="Connections of the limit kept free for clients outside the budget (psql, cron jobs, "
        "other services, a reload's extra workers): the budget is the limit less N.",
    )
    fleet: str | None = _setting(
        None,
        flags=("--fleet",),
        kind="str",
        metavar="NAME",
        group="Fleet",
        help="Fleet this master joins: every master on every host that uses the database counts toward "
        "one connection budget, recorded in the table supervise_fleet.",
        default_doc="TARGET's module and the database name (app/shop)",
    )
    no_fleet: bool = _setting(
        False,
        flags=("--no-fleet",),
        kind="bool",
        group="Fleet",
        help="Do not join a fleet: the budget counts this master alone, and nothing is written.",
    )
    fleet_host: str | None = _setting(
        None,
        flags=("--fleet-host",),
        kind="str",
        metavar="NAME",
        group="Fleet",
        help="This master's host in the fleet and in application_name.",
        default_doc="the host name",
    )
    fleet_lease: float = _setting(
        10.0,
        flags=("--fleet-lease",),
        kind="float",
        minimum=3,
        maximum=3600,
        metavar="S",
        group="Fleet",
        help="A master's reservation stops counting S seconds after its last renewal (a master that "
        "died, a host that vanished); it is renewed every S/3 seconds.",
    )
