"""Settings of PostgreSQL: the URL, each worker's pools, the connection budget
and the fleet it is shared with (docs/deploy/capacity.md), and migrations.

Declared once here; config.py gathers every group into :class:`~supervisor.settings.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.settings.declare import MAX_DB_CONNECTIONS, MAX_POOL_SIZE, MAX_SECONDS, _setting


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    database_url: str | None = _setting(
        None,
        flags=("--database-url",),
        kind="str",
        metavar="URL",
        group="Database",
        secret=True,
        also_env=("DATABASE_URL",),
        help="PostgreSQL URL or conninfo for migrations and the per-worker pools "
        "(also read from DATABASE_URL).",
    )
    pool_min_size: int = _setting(
        1,
        flags=("--pool-min-size",),
        kind="int",
        minimum=0,
        maximum=MAX_POOL_SIZE,
        metavar="N",
        group="Database",
        help="Connections each worker opens before it reports ready.",
    )
    pool_max_size: int = _setting(
        4,
        flags=("--pool-max-size",),
        kind="int",
        minimum=1,
        maximum=MAX_POOL_SIZE,
        metavar="N",
        group="Database",
        help="Most connections one worker's pool may hold (counts toward the budget).",
    )
    pool_max_lifetime: float = _setting(
        3600.0,
        flags=("--pool-max-lifetime",),
        kind="float",
        minimum=1,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="Replace a pooled connection after S seconds.",
    )
    pool_max_idle: float = _setting(
        600.0,
        flags=("--pool-max-idle",),
        kind="float",
        minimum=1,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="Close connections above the minimum that were unused for S seconds.",
    )
    pool_check_idle: float = _setting(
        2.0,
        flags=("--pool-check-idle",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="Test a pooled connection with a round trip before lending it only if it sat idle "
        "S seconds or more (0: on every checkout; the maximum, a week: in effect never).",
    )
    pool_timeout: float = _setting(
        30.0,
        flags=("--pool-timeout",),
        kind="float",
        minimum=0.1,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="How long a request for a connection waits before PoolTimeout.",
    )
    pool_reconnect_timeout: float = _setting(
        60.0,
        flags=("--pool-reconnect-timeout",),
        kind="float",
        minimum=1,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="A worker whose pool cannot reconnect for S seconds is reported unhealthy and replaced.",
    )
    pool_stats_interval: float = _setting(
        60.0,
        flags=("--pool-stats-interval",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="Each worker logs its pool statistics every S seconds (0: only on USR1).",
    )
    max_db_connections: int | None = _setting(
        None,
        flags=("--max-db-connections",),
        kind="int",
        minimum=1,
        maximum=MAX_DB_CONNECTIONS,
        metavar="N",
        group="Database",
        help="Connection budget: start and TTIN refuse when workers x pool max size + 1 exceeds it.",
        default_doc="server's max_connections less reserved slots",
    )
    db_wait_timeout: float = _setting(
        60.0,
        flags=("--db-wait-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="At start, wait up to S seconds (with backoff) for PostgreSQL to accept connections.",
    )
    migrations: str | None = _setting(
        None,
        flags=("--migrations",),
        kind="str",
        metavar="SPEC",
        group="Migrations",
        help="A directory of NNNN_name.sql files, module:callable taking the locked connection, "
        "or alembic:PATH/alembic.ini.",
    )
    migrate: bool = _setting(
        True,
        flags=("--migrate/--no-migrate",),
        kind="bool",
        group="Migrations",
        help="Apply pending migrations at start, before any worker is forked.",
    )
    migrations_out_of_order: bool = _setting(
        False,
        flags=("--migrations-out-of-order/--no-migrations-out-of-order",),
        kind="bool",
        group="Migrations",
        help="Apply a pending migration numbered below one already applied (a branch merged late) "
        "instead of refusing with exit 5.",
    )
    migration_lock_timeout: float = _setting(
        300.0,
        flags=("--migration-lock-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Migrations",
        help="How long to wait for another master's migration lock before exit 5.",
    )
    table_lock_timeout: float = _setting(
        0.25,
        flags=("--table-lock-timeout",),
        kind="float",
        minimum=0,
        maximum=3600,
        metavar="S",
        group="Migrations",
        help="Each migration statement waits at most S seconds for a lock (PostgreSQL's lock_timeout, "
        "counted per file attempt), so queries queued behind it on a busy table wait no longer; then "
        "the file is rolled back and retried. Set it above your longest normal transaction on the "
        "tables you migrate (0: no limit, readers queue for as long as the migration waits).",
    )
    table_lock_attempts: int = _setting(
        10,
        flags=("--table-lock-attempts",),
        kind="int",
        minimum=1,
        maximum=1000,
        metavar="N",
        group="Migrations",
        help="Attempts per migration file (per statement in a '-- no-transaction' file) that timed out "
        "on a lock, retried after a jittered backoff from 0.5 s doubling to 10 s, before exit 5 naming "
        "what holds the lock.",
    )


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
