"""The SQL the producer, the demo and the chaos run share: enqueue, and the
exactly-once audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

# Consumers LISTEN on this channel; a NOTIFY is delivered when the enqueuing
# transaction commits, so a woken consumer always finds the new jobs.
CHANNEL = "jobs"


@dataclass(frozen=True)
class Batch:
    """The ids one enqueue call created (ids are consecutive within one insert
    only if nobody else enqueues at the same time, so keep both ends and the count)."""

    first_id: int
    last_id: int
    count: int


def enqueue(conn: psycopg.Connection[Any], count: int) -> Batch:
    """Insert ``count`` queued jobs in one transaction and wake the consumers."""
    with conn.transaction():
        row = conn.execute(
            """
            with added as (
                insert into jobs (payload)
                select 'job ' || n from generate_series(1, %s) as n
                returning id
            )
            select coalesce(min(id), 0), coalesce(max(id), 0), count(*) from added
            """,
            (count,),
        ).fetchone()
        conn.execute("select pg_notify(%s, '')", (CHANNEL,))
    assert row is not None
    return Batch(int(row[0]), int(row[1]), int(row[2]))


@dataclass(frozen=True)
class Audit:
    """What happened to a range of jobs. ``exactly_once`` counts jobs that are
    done and have exactly one effect row; anything else is a bug."""

    jobs: int
    done: int
    exactly_once: int
    without_effect: int  # lost: never done, or marked done with no effect
    duplicated: int  # done more than once
    effects: int
    workers: int  # distinct worker ids that did some

    @property
    def ok(self) -> bool:
        return self.jobs > 0 and self.exactly_once == self.jobs == self.effects


def audit(conn: psycopg.Connection[Any], first_id: int = 0, last_id: int = 2**62) -> Audit:
    """Count, for the jobs with ids in [first_id, last_id], how often each was done."""
    row = conn.execute(
        """
        select count(*),
               count(*) filter (where j.status = 'done'),
               count(*) filter (where j.status = 'done' and e.n = 1),
               count(*) filter (where coalesce(e.n, 0) = 0),
               count(*) filter (where e.n > 1),
               coalesce(sum(e.n), 0),
               count(distinct j.done_by)
        from jobs j
        left join (select job_id, count(*) as n from job_effects group by job_id) e on e.job_id = j.id
        where j.id between %s and %s
        """,
        (first_id, last_id),
    ).fetchone()
    assert row is not None
    return Audit(*(int(v) for v in row))


def remaining(conn: psycopg.Connection[Any]) -> int:
    """Jobs still queued (including ones a consumer holds right now)."""
    row = conn.execute("select count(*) from jobs where status = 'queued'").fetchone()
    assert row is not None
    return int(row[0])
