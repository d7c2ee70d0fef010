"""The job-queue demo: ``python -m examples.jobqueue [--jobs 2000] [--workers 4]``.

Migrates once, enqueues the jobs, runs the consumers under the supervisor
until the queue is empty, then checks that every job was done exactly once.
Without ``--database-url`` / ``DATABASE_URL`` it starts a throwaway PostgreSQL
and deletes it on exit. Ctrl-C stops it cleanly at any point.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import psycopg

from examples.jobqueue import CONSUMER, MIGRATIONS
from examples.jobqueue.store import Batch, audit, enqueue
from examples.jobqueue.throwaway import throwaway_server
from supervisor import Supervisor
from supervisor import logging as slog
from supervisor.context import MasterInfo

log = logging.getLogger("jobqueue.demo")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.jobqueue", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs to enqueue (default 2000)")
    parser.add_argument("--workers", type=int, default=4, help="consumer processes (default 4)")
    parser.add_argument("--work-ms", type=float, default=5.0, help="pretend work per job, in ms (default 5)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="default: $DATABASE_URL, else a throwaway server",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.work_ms < 0:
        parser.error("--jobs and --workers must be at least 1, --work-ms at least 0")
    return args


@contextmanager
def term_as_interrupt() -> Iterator[None]:
    """Let ``kill`` (TERM) clean up like Ctrl-C does, outside the supervisor
    (which handles TERM itself and puts this handler back when it returns)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(args: argparse.Namespace, url: str) -> int:
    # The consumers are forked from the supervisor and inherit these.
    os.environ["JOBQUEUE_EXIT_WHEN_EMPTY"] = "1"
    os.environ["JOBQUEUE_WORK_MS"] = str(args.work_ms)
    sup = Supervisor(
        CONSUMER,
        workers=args.workers,
        database_url=url,
        migrations=str(MIGRATIONS),
        pool_max_size=2,  # one connection per job, one to LISTEN while idle
    )
    state: dict[str, Any] = {}

    @sup.after_migrate  # in the supervisor's master: after the tables exist, before any fork
    def enqueue_jobs(info: MasterInfo) -> None:
        assert info.config.database_url
        with psycopg.connect(info.config.database_url, application_name="jobqueue:producer") as conn:
            state["batch"] = enqueue(conn, args.jobs)
        log.info("enqueued jobs", extra={"jobs": args.jobs})
        state["started"] = time.monotonic()

    code = sup.run()
    batch: Batch | None = state.get("batch")
    if batch is None:  # stopped before the jobs were enqueued
        return code or 130
    elapsed = time.monotonic() - state["started"]
    with psycopg.connect(url) as conn:
        result = audit(conn, batch.first_id, batch.last_id)
    if result.duplicated or result.done != result.exactly_once:
        log.error(
            "exactly-once violated",
            extra={"duplicated": result.duplicated, "done_without_effect": result.done - result.exactly_once},
        )
        return 1
    if result.ok:
        log.info(
            f"{result.exactly_once} of {batch.count} jobs done exactly once "
            f"by {result.workers} workers in {elapsed:.1f} s"
        )
        return code
    log.warning(
        f"stopped early: {result.done} of {batch.count} jobs done, each exactly once; "
        f"{batch.count - result.done} still queued"
    )
    return code or 130


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    slog.configure("info", os.environ.get("SUPERVISE_LOG_FORMAT", "auto"))
    try:
        with term_as_interrupt():
            server = nullcontext(args.database_url) if args.database_url else throwaway_server(log.info)
            with server as url:
                return run(args, url)
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
    except RuntimeError as exc:  # no database to be had
        log.error(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
