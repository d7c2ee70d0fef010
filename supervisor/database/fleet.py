"""Fleet membership: one connection budget for every master that uses the database.

Each master records its reservation (``workers x pool max + 1``) as a row of
``supervise_fleet``, keyed by fleet, host and pid. Checking the budget and
writing the row are one transaction under a transaction-level advisory lock,
so two masters starting at the same instant are served one after the other:
the second sees the first's row. The row carries a lease, measured on the
server's clock (so hosts' clocks never matter); a master refreshes it every
third of the lease and deletes it on a clean exit, and a master that died
stops counting when its lease runs out.

A restart of PostgreSQL keeps the rows (a plain table) and gives each one a
fresh lease from the server's start: the masters that were running when it
stopped are still counted while they reconnect, and nobody can start in the
room they hold.

The master never holds a connection here between two calls: each check,
refresh and exit opens a short-lived connection and closes it before
returning, so no fork ever sees one (see fork_guard.py); a refresh is bounded
by the connect timeout and backs off while the server is unreachable.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from supervisor.database import appname, budget
from supervisor.errors import ConfigError
from supervisor.logging import get_logger
from supervisor.redact import scrub
from supervisor.settings.config import Config

log = get_logger()

TABLE = "supervise_fleet"
LOCK_KEY = int.from_bytes(hashlib.blake2b(b"pg-supervise:fleet", digest_size=8).digest(), "big", signed=True)
CONNECT_TIMEOUT_S = 2  # the least libpq and psycopg accept
STATEMENT_TIMEOUT_MS = 3000  # a refresh never holds the master's loop longer
# A check waits its turn behind the other masters' checks (each a few ms);
# only a start, a TTIN or a reload wait this long, never the loop's refresh.
RESERVE_TIMEOUT_MS = 5000
SHOWN = 8  # members named in a refusal; the rest are counted

DDL = (
    f"create table if not exists {TABLE} ("
    "fleet text not null, host text not null, pid integer not null, "
    "workers integer not null, pool_max integer not null, reserved integer not null, "
    "lease_s double precision not null, "
    "started_at timestamptz not null default now(), "
    "heartbeat_at timestamptz not null default now(), "
    "migrations bigint[], "
    "primary key (fleet, host, pid))"
)
# The migration versions a master's code has (its --migrations directory), for
# contract migrations (migrate/contract.py). Tables made before it lack it: it
# is added on the next reservation, as a nullable column (a change of the
# catalog only, no rewrite); a row without it is a master too old to say.
MIGRATIONS_COLUMN = f"alter table {TABLE} add column if not exists migrations bigint[]"

# A row counts until its lease runs out, counted from its last refresh or from
# the server's start, whichever is later (see the module's docstring).
LIVE = "greatest(heartbeat_at, pg_postmaster_start_time()) + make_interval(secs => lease_s) > now()"


def _upsert(records: bool) -> str:
    """The row's insert or refresh; ``records``: with the migrations column."""
    column, value, update = (", migrations", ", %(migrations)s", "migrations = excluded.migrations, ")
    if not records:
        column = value = update = ""
    return (
        f"insert into {TABLE} (fleet, host, pid, workers, pool_max, reserved, lease_s{column}) "
        f"values (%(fleet)s, %(host)s, %(pid)s, %(workers)s, %(pool_max)s, %(reserved)s, %(lease)s{value}) "
        "on conflict (fleet, host, pid) do update set workers = excluded.workers, "
        f"pool_max = excluded.pool_max, reserved = excluded.reserved, lease_s = excluded.lease_s, {update}"
        f"heartbeat_at = now(), started_at = case when %(joining)s then now() else {TABLE}.started_at end"
    )


@dataclass(frozen=True)
class Reservation:
    """One master's row, as the server sees it now."""

    fleet: str
    host: str
    pid: int
    workers: int
    pool_max: int
    reserved: int
    age_s: float
    heartbeat_age_s: float
    lease_s: float
    live: bool
    migrations: tuple[int, ...] | None = None  # the versions its code has; None: not recorded

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.fleet, self.host, self.pid)

    def lacks(self, version: int) -> bool:
        """Its code may not know migration ``version`` (a row that records none counts as old code)."""
        return self.migrations is None or version not in self.migrations


def connect(config: Config, purpose: str = "fleet") -> psycopg.Connection[Any]:
    """A short-lived connection (the caller closes it)."""
    assert config.database_url
    return psycopg.connect(
        config.database_url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name=appname.application_name(config, purpose),
    )


def _bounded(conn: psycopg.Connection[Any], ms: int = STATEMENT_TIMEOUT_MS) -> None:
    # SET LOCAL, not a startup option: PgBouncer refuses unknown startup
    # parameters, and a session SET would stay on its server connection.
    conn.execute(f"set local statement_timeout = {ms}")
    conn.execute(f"set local lock_timeout = {ms}")


def first_line(text: str) -> str:
    """psycopg's first line says what failed; the next ones are libpq's hints."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class NoTableError(ConfigError):
    """The table is missing and this role may not create it."""


def ensure_table(conn: psycopg.Connection[Any]) -> bool:
    """Create the table if it is missing, or add its migrations column (under
    the fleet lock: two creators at once would collide on the catalog).
    Whether rows can record their migrations: a role that may not add the
    column only loses that, with a warning."""
    exists, has_column = conn.execute(
        "select to_regclass(%s) is not null, exists (select 1 from pg_attribute "
        "where attrelid = to_regclass(%s) and attname = 'migrations' and not attisdropped)",
        (TABLE, TABLE),
    ).fetchone() or (False, False)
    if exists and has_column:
        return True
    try:
        with conn.transaction():  # a savepoint: a refusal must not undo the caller's transaction
            conn.execute(MIGRATIONS_COLUMN if exists else DDL)
    except psycopg.errors.InsufficientPrivilege as exc:
        if exists:
            log.warning(
                "the fleet's table has no migrations column and this role may not add it: contract "
                "migrations count this master as old code until its owner runs the fix",
                fix=MIGRATIONS_COLUMN,
                error=first_line(str(exc)),
            )
            return False
        raise NoTableError(
            f"the fleet's table {TABLE} does not exist and this role may not create it "
            f"({first_line(str(exc))}); create it once as the schema's owner (see "
            "docs/deploy/capacity.md), or pass --no-fleet"
        ) from None
    return True


def members(conn: psycopg.Connection[Any], fleet: str | None = None) -> list[Reservation]:
    """Every row (of ``fleet``, or of all fleets), live or not; [] without the table."""
    if conn.execute("select to_regclass(%s)", (TABLE,)).fetchone() == (None,):
        return []
    return _rows(conn, fleet)


def _rows(conn: psycopg.Connection[Any], fleet: str | None = None) -> list[Reservation]:
    """As :func:`members`, where the table is known to exist."""
    where, args = ("where fleet = %s", (fleet,)) if fleet is not None else ("", ())
    rows = conn.execute(
        "select fleet, host, pid, workers, pool_max, reserved, "
        "extract(epoch from now() - started_at)::float8, "
        "extract(epoch from now() - heartbeat_at)::float8, lease_s, "
        # through jsonb: a table made before the migrations column reads as NULL
        f"{LIVE}, to_jsonb(f) -> 'migrations' from {TABLE} f {where} order by fleet, host, pid",
        args,
    ).fetchall()
    out = []
    for *fields, versions in rows:
        row = Reservation(*fields)
        out.append(row if versions is None else replace(row, migrations=tuple(versions)))
    return out


def lacking(rows: list[Reservation], version: int) -> list[Reservation]:
    """The live masters among ``rows`` (:func:`members`: every fleet on the
    database, since one database has one migrations directory) whose code
    lacks migration ``version``; a master that records none counts as old code."""
    return [r for r in rows if r.live and r.lacks(version)]


def who(rows: list[Reservation]) -> str:
    """'web-1 pid 4242 (no record of its migrations), ...' for log lines and views."""
    named = [
        f"{r.host} pid {r.pid}" + (" (no record of its migrations)" if r.migrations is None else "")
        for r in rows[:SHOWN]
    ]
    if len(rows) > SHOWN:
        named.append(f"{len(rows) - SHOWN} more")
    return ", ".join(named)


def counted(rows: list[Reservation], fleet: str, config: Config) -> list[Reservation]:
    """The live rows that share this master's limit: with --max-db-connections
    (a fleet's own allocation, a PgBouncer pool) those of its fleet; else those
    of every fleet, since they all draw on the server's max_connections."""
    own = config.max_db_connections is not None
    return [r for r in rows if r.live and (not own or r.fleet == fleet)]


class Member:
    """This master's membership: its reservation, and when to refresh it."""

    def __init__(self, config: Config, migrations: tuple[int, ...] | None = None) -> None:
        name = appname.fleet(config)
        assert name is not None
        self.fleet = name
        self.host = appname.host(config)
        self.pid = os.getpid()
        self.lease = config.fleet_lease
        # never more often than once a second, and three chances per lease
        self.interval = max(1.0, self.lease / 3)
        self.workers = 0
        self.pool_max = 0
        self.joined = False
        self.next_refresh = float("inf")
        self.last_refresh: float | None = None
        self.failures = 0
        self.migrations = migrations  # the versions its code has (migrate.check)
        self.records = True  # the table has the migrations column (ensure_table)
        self._config = config

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.fleet, self.host, self.pid)

    @property
    def reserved(self) -> int:
        return self.workers * self.pool_max + 1 if self.joined else 0

    def reserve(self, workers: int, config: Config) -> None:
        """Check that ``workers`` workers fit beside every live reservation and
        record them, in one step; raise ConfigError (and change nothing) if not."""
        per_worker = budget.per_worker_connections(config)
        if self.joined and workers <= self.workers and per_worker <= self.pool_max:
            return  # asks no more than it holds: the next refresh records the smaller size
        self._config = config
        try:
            with connect(config) as conn, conn.transaction():
                _bounded(conn, RESERVE_TIMEOUT_MS)
                conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                self.records = ensure_table(conn)
                conn.execute(f"delete from {TABLE} where not ({LIVE})")  # the dead, for good
                limit, how = budget.limit_for(conn, config)
                others = [r for r in counted(_rows(conn), self.fleet, config) if r.key != self.key]
                if not others:
                    budget.check_alone(workers, per_worker, limit, how)
                elif sum(r.reserved for r in others) + workers * per_worker + 1 > limit:
                    raise ConfigError(self.refusal(workers, per_worker, others, limit, how))
                conn.execute(_upsert(self.records), self._row(workers, per_worker, joining=not self.joined))
        except psycopg.Error as exc:
            reason = scrub(str(exc).strip(), config.database_url or "") or type(exc).__name__
            raise ConfigError(f"cannot check the fleet's connection budget: {first_line(reason)}") from None
        grew = self.joined
        self.workers, self.pool_max, self.joined = workers, per_worker, True
        now = time.monotonic()
        self.last_refresh, self.next_refresh, self.failures = now, now + self.interval, 0
        log.info(
            "fleet reservation" + (" raised" if grew else ""),
            fleet=self.fleet,
            host=self.host,
            workers=workers,
            pool_max=per_worker,
            reserved=self.reserved,
            limit=limit,
            others=sum(r.reserved for r in others),
        )

    def refusal(self, workers: int, per_worker: int, others: list[Reservation], limit: int, how: str) -> str:
        held = sum(r.reserved for r in others)
        need = workers * per_worker + 1
        ranked = sorted(others, key=lambda r: (-r.reserved, r.host, r.pid))
        named = [
            (f"{r.fleet} " if r.fleet != self.fleet else "")
            + f"{r.host} pid {r.pid}: {r.reserved} ({r.workers}x{r.pool_max}+1)"
            for r in ranked[:SHOWN]
        ]
        if len(ranked) > SHOWN:
            named.append(f"{len(ranked) - SHOWN} more: {sum(r.reserved for r in ranked[SHOWN:])}")
        fit = (limit - held - 1) // per_worker if limit - held - 1 >= per_worker else 0
        room = {0: "no worker fits here", 1: "1 worker fits here"}.get(fit, f"{fit} workers fit here")
        return (
            f"fleet connection budget exceeded: this master ({self.host} pid {self.pid}) needs "
            f"{workers} workers x pool max size {per_worker} + 1 = {need}, and {len(others)} other "
            f"master(s) hold {held} ({'; '.join(named)}): {held + need} > {limit} ({how}); {room}: "
            "lower --workers or --pool-max-size here or on the other masters, or raise "
            "--max-db-connections if the server allows more"
        )

    def _row(self, workers: int, per_worker: int, joining: bool = False) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "host": self.host,
            "pid": self.pid,
            "workers": workers,
            "pool_max": per_worker,
            "reserved": workers * per_worker + 1,
            "lease": self.lease,
            "joining": joining,
            "migrations": None if self.migrations is None else list(self.migrations),
        }

    def refresh_if_due(self, now: float, config: Config) -> None:
        """Renew the lease (the loop calls this at :attr:`next_refresh`). A smaller
        size (TTOU, a reload that shrank the pools) is recorded here; a larger
        one only ever through :meth:`reserve`."""
        if not self.joined or now < self.next_refresh:
            return
        self.workers = min(self.workers, config.workers)
        self.pool_max = min(self.pool_max, budget.per_worker_connections(config))
        try:
            with connect(config) as conn, conn.transaction():
                _bounded(conn)
                conn.execute(_upsert(self.records), self._row(self.workers, self.pool_max))
        except psycopg.Error as exc:
            self.failures += 1
            # back off while the server is away, but retry within the lease
            self.next_refresh = now + min(self.interval * 2 ** (self.failures - 1), 2 * self.interval)
            if self.failures == 1 or self.failures % 10 == 0:
                reason = scrub(str(exc).strip(), config.database_url or "") or type(exc).__name__
                log.warning(
                    "fleet lease not refreshed",
                    fleet=self.fleet,
                    failures=self.failures,
                    lease_s=self.lease,
                    effect="the reservation stops counting when its lease ends",
                    error=first_line(reason),
                )
            return
        if self.failures:
            log.info("fleet lease refreshed again", fleet=self.fleet, after_failures=self.failures)
        self.failures, self.last_refresh, self.next_refresh = 0, now, now + self.interval

    def leave(self) -> None:
        """Delete the reservation (a clean exit); at worst it ends with its lease."""
        if not self.joined:
            return
        self.joined = False
        self.next_refresh = float("inf")
        try:
            with connect(self._config) as conn, conn.transaction():
                _bounded(conn)
                conn.execute(f"delete from {TABLE} where fleet = %s and host = %s and pid = %s", self.key)
        except psycopg.Error as exc:
            log.warning(
                "could not remove the fleet reservation; it stops counting when its lease ends",
                fleet=self.fleet,
                lease_s=self.lease,
                error=first_line(str(exc)) or type(exc).__name__,
            )
            return
        log.info("left the fleet", fleet=self.fleet, host=self.host)

    def describe(self, now: float) -> dict[str, object]:
        """For /readyz."""
        return {
            "name": self.fleet,
            "host": self.host,
            "workers": self.workers,
            "pool_max": self.pool_max,
            "reserved": self.reserved,
            "lease_s": self.lease,
            "refreshed_s_ago": None if self.last_refresh is None else round(now - self.last_refresh, 3),
            "refresh_failures": self.failures,
        }
