"""A PostgreSQL job queue run by pg-supervise: each job is done exactly once,
even when workers are killed with SIGKILL or the database restarts.

    python -m examples.jobqueue                     # the demo: throwaway database, 2000 jobs, 4 workers
    python -m examples.jobqueue.producer 100        # enqueue 100 jobs (DATABASE_URL)
    supervise examples.jobqueue.consumer:main -w 4 --migrations examples/jobqueue/migrations
    python -m examples.jobqueue.chaos               # 10,000 jobs, kill -9 and a database restart

See docs/jobqueue.md.
"""

from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
CONSUMER = "examples.jobqueue.consumer:main"
