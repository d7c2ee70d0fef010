"""Enqueue N jobs: ``python -m examples.jobqueue.producer N [--database-url URL]``.

The tables come from the migrations, so run them first (``supervise migrate
--migrations examples/jobqueue/migrations``, or start the consumers with
``--migrations``).
"""

from __future__ import annotations

import argparse
import os
import sys

import psycopg

from examples.jobqueue.store import enqueue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.jobqueue.producer", description=__doc__)
    parser.add_argument("count", type=int, help="how many jobs to enqueue")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL"
    )
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("no database: pass --database-url or set DATABASE_URL")
    if args.count < 1:
        parser.error("count must be at least 1")
    with psycopg.connect(args.database_url, application_name="jobqueue:producer") as conn:
        batch = enqueue(conn, args.count)
    print(f"enqueued {batch.count} jobs (ids {batch.first_id}..{batch.last_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
