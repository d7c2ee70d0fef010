"""INVALID indexes a migration leaves behind.

A ``CREATE INDEX CONCURRENTLY`` (or ``REINDEX ... CONCURRENTLY``) that fails
cannot roll back: it leaves an index marked INVALID, which queries never use
but every write still maintains. Running the migration again does not help: its
``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` sees the name taken and succeeds
without building anything. So before a migration is recorded as applied we
look for INVALID indexes that it is answerable for:

* those that became INVALID while it ran (it built them, and they failed), and
* those whose name appears in its SQL (a leftover of an earlier failed run,
  which this run skipped or could not rebuild).

Other INVALID indexes in the database are left alone: they may belong to
someone else's build in progress or to an old accident unrelated to this
migration, and refusing every migration because of them would turn one broken
index into a blocked deploy. Builds in progress (pg_stat_progress_create_index)
are never counted.
"""

from __future__ import annotations

from typing import Any

import psycopg

from supervisor.migrate import sqlfiles

_INVALID = """
select i.indexrelid, c.relname, format('%I.%I', n.nspname, c.relname)
from pg_index i
join pg_class c on c.oid = i.indexrelid
join pg_namespace n on n.oid = c.relnamespace
where not i.indisvalid
"""
_NOT_BEING_BUILT = (
    "  and not exists (select 1 from pg_stat_progress_create_index p where p.index_relid = i.indexrelid)"
)


def invalid(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str]]:
    """oid -> (name, schema-qualified name) of every INVALID index not being built."""
    # the progress view is PostgreSQL 12+; before it, a build in progress counts too
    query = _INVALID + _NOT_BEING_BUILT if conn.info.server_version >= 120000 else _INVALID
    return {oid: (name, qualified) for oid, name, qualified in conn.execute(query).fetchall()}


def left_by(
    conn: psycopg.Connection[Any], migration: sqlfiles.Migration, before: dict[int, tuple[str, str]]
) -> list[str]:
    """Schema-qualified names of the INVALID indexes ``migration`` is answerable
    for (see the module docstring); ``before`` is :func:`invalid` taken just
    before it ran."""
    named = sqlfiles.identifiers(migration.sql)
    return sorted(
        qualified for oid, (name, qualified) in invalid(conn).items() if oid not in before or name in named
    )


def advice(names: list[str]) -> str:
    drops = " ".join(f"DROP INDEX CONCURRENTLY {name};" for name in names)
    which = "index" if len(names) == 1 else "indexes"
    return (
        f"INVALID {which} {', '.join(names)} (a failed concurrent build; queries do not use it): run {drops}"
    )
