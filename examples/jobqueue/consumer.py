"""The consumer: ``supervise examples.jobqueue.consumer:main -w 4 --migrations examples/jobqueue/migrations``.

Each job is claimed, worked on and marked done in **one** transaction, so it is
done exactly once: a worker killed mid-job (even by SIGKILL) leaves a
transaction the server rolls back, which unlocks the job for the next claim.
``FOR UPDATE SKIP LOCKED`` lets the workers claim different jobs without
waiting for each other.

Environment:

* ``JOBQUEUE_EXIT_WHEN_EMPTY=1``: return from ``main`` once no job is queued,
  so the supervisor exits 0 when every worker has finished (the demo and the
  chaos run use this; a service leaves it unset and waits for new jobs).
* ``JOBQUEUE_WORK_MS``: how long each job's pretend work takes (default 0).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass

import psycopg

from examples.jobqueue.store import CHANNEL, remaining
from supervisor import Worker
from supervisor.database.retry import is_transient

log = logging.getLogger("jobqueue")

# Oldest first; a job another worker holds is skipped instead of waited for.
CLAIM = """
    select id, payload from jobs
    where status = 'queued'
    order by id
    limit 1
    for update skip locked
"""

CONNECTION_WAIT = 5.0  # s; bounded so a database outage never outlasts a heartbeat
IDLE_WAIT = 0.5  # s; the longest an idle worker waits before it looks again without a NOTIFY
RETRY_MAX = 2.0  # s; the longest pause between attempts while the database is away
PROGRESS_EVERY = 1.0  # s


@dataclass(frozen=True)
class Settings:
    exit_when_empty: bool
    work_s: float

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            exit_when_empty=os.environ.get("JOBQUEUE_EXIT_WHEN_EMPTY", "") in ("1", "true", "yes"),
            work_s=float(os.environ.get("JOBQUEUE_WORK_MS", "0")) / 1000,
        )


def main(worker: Worker) -> None:
    settings = Settings.from_env()
    done = done_at_last_report = 0
    retry_in = 0.0
    next_report = time.monotonic() + PROGRESS_EVERY
    # A stop lets the current job finish: the flag is only looked at between jobs.
    while not worker.stopping.is_set():
        worker.heartbeat()
        try:
            job_id = process_one(worker, settings.work_s)
            if job_id is not None:
                done += 1
                worker.count_work()
            elif settings.exit_when_empty and queue_drained(worker):
                log.info("queue empty; worker finished", extra={"jobs_done": done})
                return
            else:
                wait_for_jobs(worker)
            retry_in = 0.0
        except psycopg.Error as exc:
            if not is_transient(exc):
                raise  # a bug or a bad job: crash, and let the supervisor decide
            # The job's transaction (if any) died with the connection and was
            # rolled back by the server; the pool reconnects on its own.
            retry_in = min(RETRY_MAX, retry_in * 2 or 0.1)
            log.warning(
                "database unavailable; retrying",
                extra={"error": _first_line(exc), "retry_in_s": retry_in},
            )
            worker.stopping.wait(retry_in)
        now = time.monotonic()
        if now >= next_report and done > done_at_last_report:  # an idle worker stays quiet
            log.info("progress", extra={"jobs_done": done, "last_second": done - done_at_last_report})
            done_at_last_report, next_report = done, now + PROGRESS_EVERY
    log.info("stopping between jobs", extra={"jobs_done": done})


def process_one(worker: Worker, work_s: float) -> int | None:
    """Claim one job, do it and mark it done, all in one transaction; return
    its id, or None when no job is free."""
    with worker.db.connection(timeout=CONNECTION_WAIT) as conn, conn.transaction():
        row = conn.execute(CLAIM).fetchone()
        if row is None:
            return None
        job_id, payload = row
        result = do_work(payload, work_s)
        # The effect and the done-mark commit together or not at all: that,
        # not any constraint, is what makes the job happen exactly once.
        conn.execute(
            "insert into job_effects (job_id, worker_id, result) values (%s, %s, %s)",
            (job_id, worker.id, result),
        )
        conn.execute(
            "update jobs set status = 'done', done_at = now(), done_by = %s where id = %s",
            (worker.id, job_id),
        )
    return int(job_id)


def do_work(payload: str, work_s: float) -> str:
    """The pretend work: a digest of the payload, after ``work_s`` of "I/O"."""
    if work_s:
        time.sleep(work_s)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def queue_drained(worker: Worker) -> bool:
    # Counts the jobs other workers hold as well: if one of them dies, its job
    # is queued again and someone must still be here to take it.
    with worker.db.connection(timeout=CONNECTION_WAIT) as conn:
        return remaining(conn) == 0


def wait_for_jobs(worker: Worker) -> None:
    """Sleep until a producer's NOTIFY, or at most IDLE_WAIT.

    The timeout is the safety net: a job enqueued between our empty claim and
    the LISTEN, or released by a worker that died, comes with no notification.
    """
    with worker.db.connection(timeout=CONNECTION_WAIT) as conn:
        conn.execute(f"listen {CHANNEL}")
        conn.commit()  # LISTEN takes effect at commit
        for _ in conn.notifies(timeout=IDLE_WAIT, stop_after=1):
            pass
        conn.execute("unlisten *")  # the connection goes back to the pool
        conn.commit()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
