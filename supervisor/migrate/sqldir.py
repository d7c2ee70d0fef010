"""``--migrations DIR``: a directory of ``NNNN_name.sql`` files, applied in
order under the advisory lock, each in one transaction together with its
bookkeeping row (or statement by statement, for a ``-- no-transaction`` file).
Files are parsed in :mod:`supervisor.migrate.sqlfiles`."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg

from supervisor.database import fleet
from supervisor.errors import MigrationError
from supervisor.logging import get_logger
from supervisor.migrate import indexes, lockqueue, unsafe
from supervisor.migrate.connection import connect
from supervisor.migrate.lock import advisory_lock, held_if_free
from supervisor.migrate.sqlfiles import TABLE, Migration, Statement, load, statements
from supervisor.settings.config import Config

log = get_logger()


@dataclass(frozen=True)
class Row:
    """One migration's state, for ``supervise migrate --status``."""

    version: int
    file: str
    state: str  # applied, pending, edited, missing (applied but no file)
    applied_at: str = ""
    contract: bool = False
    waits_for: str = ""  # a pending contract migration: the live masters whose code lacks it


def _ensure_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"create table if not exists {TABLE} ("
        "version bigint primary key, name text not null, checksum text not null, "
        "applied_at timestamptz not null default now(), duration_ms integer not null, "
        "applied_by text not null)"
    )


def _applied(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str, str]]:
    """What the table records; nothing when there is no table yet (read-only)."""
    if conn.execute("select to_regclass(%s)", (TABLE,)).fetchone() == (None,):
        return {}
    rows = conn.execute(f"select version, name, checksum, applied_at::text from {TABLE}").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _check_edits(migrations: list[Migration], applied: dict[int, tuple[str, str, str]]) -> None:
    for m in migrations:
        if m.version in applied and applied[m.version][1] != m.checksum:
            raise MigrationError(
                f"migration {m.file} was edited after it was applied (checksum "
                f"{applied[m.version][1][:12]}... in the database, {m.checksum[:12]}... on disk); "
                f"restore the file, or accept the edit with 'supervise migrate --accept-edit "
                f"{m.version}'"
            )


def _check_order(
    pending: list[Migration],
    applied: dict[int, tuple[str, str, str]],
    migrations: list[Migration],
    allowed: bool,
) -> None:
    """Refuse a pending migration numbered below an applied one: it was written
    against an older schema than the database has (a branch merged late), and
    applying it silently is how schemas drift apart between environments."""
    if not applied:
        return
    newest = max(applied)
    late = [m for m in pending if m.version < newest and not m.contract]  # a contract waits on purpose
    if not late:
        return
    files = {m.version: m.file for m in migrations}
    newest_name = files.get(newest, f"version {newest} ({applied[newest][0]})")
    if allowed:
        log.warning(
            "applying migrations out of order (--migrations-out-of-order)",
            files=[m.file for m in late],
            newest_applied=newest_name,
        )
        return
    more = f" (and {len(late) - 1} more)" if len(late) > 1 else ""
    raise MigrationError(
        f"migration {late[0].file}{more} is numbered below {newest_name}, which is already applied; "
        f"renumber it above {newest}, or pass --migrations-out-of-order to apply it anyway"
    )


def check(spec: str) -> tuple[int, ...]:
    """The directory can be read and its files are well named: their versions."""
    return tuple(m.version for m in load(spec))


def run(config: Config, spec: str, dry_run: bool) -> list[str]:
    """Apply the pending files of directory ``spec`` under the lock; return
    what was (or would be) applied."""
    migrations = load(spec)
    with connect(config) as conn, advisory_lock(conn, config.migration_lock_timeout):
        if not dry_run:  # a dry run changes nothing: a read-only role may run it
            _ensure_table(conn)
        applied = _applied(conn)  # re-read under the lock: another master may have applied some
        _check_edits(migrations, applied)
        for version in sorted(set(applied) - {m.version for m in migrations}):
            log.warning("an applied migration has no file", version=version, name=applied[version][0])
        pending = [m for m in migrations if m.version not in applied]
        _check_order(pending, applied, migrations, config.migrations_out_of_order)
        _refuse_unsafe(conn, pending)
        if dry_run or not pending:
            now = [m for m in pending if not _waiting(conn, m)]
            log.info(
                "migrations up to date" if not now else "migrations pending",
                pending=[m.file for m in now],
                applied=len(applied),
            )
            return [m.file for m in now]
        policy = lockqueue.Policy.of(config)
        done = []
        for m in pending:
            # a contract whose old code still runs waits; the files after it do not
            if not _waiting(conn, m):
                _apply(conn, m, policy)
                done.append(m.file)
        return done


def _waiting(conn: psycopg.Connection[Any], m: Migration) -> list[fleet.Reservation]:
    """For a contract migration, the live masters whose code lacks it (said in
    the log); [] when it may run, and for every other file."""
    if not m.contract:
        return []
    waiting = fleet.lacking(fleet.members(conn), m.version)
    if waiting:
        log.info("contract migration pending", file=m.file, waits_for=fleet.who(waiting))
    return waiting


def apply_due(
    config: Config, contracts: list[Migration], policy: lockqueue.Policy
) -> list[fleet.Reservation]:
    """From the master's loop: apply the ``contracts`` (pending contract
    files, in order) whose old code is gone, on a short-lived connection under
    the run-once lock, taken only if it is free (another master migrating: the
    next time). Removes what is applied (here or elsewhere) from ``contracts``;
    returns the masters the first one still waits for."""
    with connect(config, connect_timeout=fleet.CONNECT_TIMEOUT_S) as conn:
        applied = _applied(conn)
        contracts[:] = [m for m in contracts if m.version not in applied]
        if not contracts:
            return []
        waiting = fleet.lacking(fleet.members(conn), contracts[0].version)
        if waiting:
            return waiting
        with held_if_free(conn) as held:
            if not held:
                return []
            applied = _applied(conn)  # under the lock: another master may have applied it
            while contracts:
                m = contracts[0]
                if m.version not in applied:
                    if waiting := fleet.lacking(fleet.members(conn), m.version):
                        return waiting
                    _apply(conn, m, policy)
                contracts.pop(0)
    return []


def _refuse_unsafe(conn: psycopg.Connection[Any], pending: list[Migration]) -> None:
    """Raise, before anything is applied, if a pending file holds an unsafe
    operation (unsafe.py); without pglast, say once that it was not checked."""
    if not any(not m.contract for m in pending):
        return
    try:
        findings = unsafe.check(pending, unsafe.ServerFacts(conn))
    except unsafe.Unavailable as exc:
        log.warning("the unsafe-operation check was skipped", reason=str(exc))
        return
    for finding in findings:
        log.error("unsafe migration statement", finding=str(finding))
    if findings:
        raise MigrationError(unsafe.summary(findings, applying=True))


def check_pending(config: Config, spec: str) -> tuple[list[unsafe.Finding], int]:
    """``supervise migrate --check``: the findings in the pending files and how
    many files were checked. Reads the applied set when there is a database
    (nothing is written); without one, every file counts as pending."""
    migrations = load(spec)
    if not config.database_url:
        log.info("no database: every file counts as pending, and every table it does not create as live")
        return unsafe.check(migrations), len(migrations)
    with connect(config) as conn:
        applied = _applied(conn)
        pending = [m for m in migrations if m.version not in applied]
        return unsafe.check(pending, unsafe.ServerFacts(conn)), len(pending)


def _apply(conn: psycopg.Connection[Any], m: Migration, policy: lockqueue.Policy) -> None:
    """Apply one file under the lock rule (lockqueue.py), recording it in the
    same transaction, or after its last statement for a no-transaction file."""
    started = time.monotonic()
    log.info("applying migration", file=m.file, transaction=m.transactional)
    before = indexes.invalid(conn)
    running: list[Statement] = []  # the statement in progress, for the error message

    def run(statement: Statement, timeout_ms: int) -> None:
        running[:] = [statement]
        lockqueue.execute(conn, statement, timeout_ms, local=m.transactional)

    def attempt() -> None:
        with conn.transaction():
            budget = lockqueue.Attempt(policy)
            for statement in statements(m.sql):
                run(statement, budget.left_ms())
            _refuse_invalid_indexes(conn, m, before)
            _record(conn, m, started)

    label = f"migration {m.file}"
    kept = "statements before it stay applied (no-transaction); make them idempotent"
    try:
        if m.transactional:
            lockqueue.retry(conn, policy, label, attempt, "rolled back; nothing of it was applied")
        else:
            for statement in statements(m.sql):
                lockqueue.retry(conn, policy, label, partial(run, statement, policy.timeout_ms), kept)
            lockqueue.reset(conn)
            _refuse_invalid_indexes(conn, m, before)
            _record(conn, m, started)
    except psycopg.Error as exc:
        where = ""
        if running and m.transactional:
            where = f" at line {running[0].line}"
        elif running:
            where = f" in statement {running[0].sql[:80]!r}"
        detail = exc.diag.message_primary or str(exc).strip()
        state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        undone = "rolled back; nothing of it was applied" if m.transactional else kept
        left = "" if m.transactional else _left_behind(conn, m, before)
        raise MigrationError(f"migration {m.file} failed{where}: {detail}{state}; {undone}{left}") from exc
    log.info("migration applied", file=m.file, duration_ms=int((time.monotonic() - started) * 1000))


def _record(conn: psycopg.Connection[Any], m: Migration, started: float) -> None:
    conn.execute(
        f"insert into {TABLE} (version, name, checksum, duration_ms, applied_by) values (%s, %s, %s, %s, %s)",
        (
            m.version,
            m.name,
            m.checksum,
            int((time.monotonic() - started) * 1000),
            f"{socket.gethostname()}:{os.getpid()}",
        ),
    )


def _refuse_invalid_indexes(
    conn: psycopg.Connection[Any], m: Migration, before: dict[int, tuple[str, str]]
) -> None:
    left = indexes.left_by(conn, m, before)
    if left:
        raise MigrationError(
            f"migration {m.file} is not recorded as applied: it leaves {indexes.advice(left)}, "
            "then run the migrations again"
        )


def _left_behind(conn: psycopg.Connection[Any], m: Migration, before: dict[int, tuple[str, str]]) -> str:
    """'; it left INVALID index ...' after a failed no-transaction migration, or ''."""
    try:
        left = indexes.left_by(conn, m, before)
    except psycopg.Error:  # the report must not hide the failure it is about
        return ""
    return f"; it left {indexes.advice(left)} before running it again" if left else ""


def status(config: Config) -> list[Row]:
    """Applied, pending, edited and orphaned migrations (no lock needed: read-only)."""
    assert config.migrations
    migrations = load(config.migrations)
    with connect(config) as conn:
        applied = _applied(conn)
        members = fleet.members(conn)
    waits = {m.version: fleet.lacking(members, m.version) for m in migrations if m.contract}
    rows = []
    for m in migrations:
        if m.version not in applied:
            waiting = waits.get(m.version)
            rows.append(
                Row(m.version, m.file, "pending", "", m.contract, fleet.who(waiting) if waiting else "")
            )
        else:
            state = "applied" if applied[m.version][1] == m.checksum else "edited"
            rows.append(Row(m.version, m.file, state, applied[m.version][2]))
    known = {m.version for m in migrations}
    rows += [Row(v, applied[v][0], "missing", applied[v][2]) for v in applied if v not in known]
    return sorted(rows, key=lambda r: r.version)


def accept_edit(config: Config, version: int) -> None:
    """Record the current checksum of an applied, edited migration."""
    assert config.migrations
    migrations = {m.version: m for m in load(config.migrations)}
    if version not in migrations:
        raise MigrationError(f"no migration file with version {version}")
    with connect(config) as conn, advisory_lock(conn, config.migration_lock_timeout):
        _ensure_table(conn)
        updated = conn.execute(
            f"update {TABLE} set checksum = %s where version = %s",
            (migrations[version].checksum, version),
        ).rowcount
    if not updated:
        raise MigrationError(f"migration {version} is not applied; nothing to accept")
    log.info("accepted the edit of an applied migration", file=migrations[version].file)
