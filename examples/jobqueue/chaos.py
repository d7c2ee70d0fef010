"""The chaos run: ``python -m examples.jobqueue.chaos [--jobs 10000] [--workers 4]``.

Enqueues the jobs, runs ``supervise`` with the consumers, and while they work
kills workers at random with SIGKILL and restarts the database server. Then
it checks that every job was done exactly once: done, with exactly one effect
row. It makes its own throwaway local cluster (it must be able to restart
it); ``tests/processes/test_jobqueue.py`` runs the same :func:`run_chaos` on the test
server.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from examples.jobqueue import CONSUMER, MIGRATIONS
from examples.jobqueue.store import Audit, Batch, audit, enqueue
from supervisor.testing.launch import SupervisorProcess, alive, wait_until
from supervisor.testing.postgres import local_cluster

ROOT = Path(__file__).resolve().parents[2]
APP = CONSUMER.partition(":")[0]  # the application_name prefix of the workers' connections


@dataclass
class ChaosResult:
    jobs: int
    workers: int
    audit: Audit | None = None
    kills: int = 0
    kills_mid_job: int = 0  # the victim had a job's transaction open just before the signal
    db_restarts: int = 0
    retries: int = 0  # "database unavailable; retrying" lines from the consumers
    crashes: int = 0  # "worker crashed" lines from the master
    duration_s: float = 0.0
    exit_code: int | None = None
    leftovers: list[int] = field(default_factory=list)  # processes that outlived the master
    output: str = ""  # the supervisor's last log lines, for a failure message

    @property
    def ok(self) -> bool:
        return self.audit is not None and self.audit.ok and self.audit.jobs == self.jobs

    def summary(self) -> str:
        a = self.audit
        verdict = (
            f"{a.exactly_once} of {self.jobs} jobs done exactly once, {a.without_effect} lost, "
            f"{a.duplicated} done twice or more"
            if a
            else "no audit"
        )
        return (
            f"{verdict}; {self.workers} workers, {self.kills} killed with SIGKILL "
            f"({self.kills_mid_job} mid-job), {self.db_restarts} database restart(s), "
            f"{self.retries} retries, {self.duration_s:.1f} s, supervise exited {self.exit_code}"
        )


def plan(kills: int, db_restarts: int) -> list[tuple[float, str]]:
    """When to strike, as fractions of the jobs done: spread over 10%..85%,
    database restarts among the kills rather than all at one end."""
    n = kills + db_restarts
    restart_at = {int((j + 0.5) * n / db_restarts) for j in range(db_restarts)} if db_restarts else set()
    kinds = iter(["kill"] * kills)
    events = []
    for i in range(n):
        kind = "restart" if i in restart_at else next(kinds, "restart")
        events.append((0.10 + 0.75 * i / max(1, n - 1), kind))
    return events


class Monitor:
    """One connection for watching the run, made again after a database restart."""

    def __init__(self, url: str, batch: Batch) -> None:
        self.url, self.batch = url, batch
        self._conn: psycopg.Connection[Any] | None = None

    def _query(self, sql: str, params: tuple[Any, ...]) -> Any:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
            row = self._conn.execute(sql, params).fetchone()
            return row[0] if row else None
        except psycopg.OperationalError:
            self.close()
            return None  # the server is restarting: the caller polls again

    def done(self) -> int:
        # counted as "not queued" so the partial index answers, not a scan of every job
        queued = self._query(
            "select count(*) from jobs where id between %s and %s and status = 'queued'",
            (self.batch.first_id, self.batch.last_id),
        )
        return 0 if queued is None else self.batch.count - int(queued)

    def in_transaction(self, worker_id: int) -> bool:
        return bool(
            self._query(
                "select count(*) from pg_stat_activity"
                " where application_name = %s and xact_start is not null",
                (f"{APP}:worker-{worker_id}",),
            )
        )

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


def run_chaos(
    url: str,
    restart_db: Callable[[], None],
    *,
    jobs: int = 10_000,
    workers: int = 4,
    kills: int = 6,
    db_restarts: int = 1,
    work_ms: float = 2.0,
    timeout: float = 120.0,
    seed: int | None = None,
    say: Callable[[str], None] = print,
) -> ChaosResult:
    """Run the consumers on ``url`` under fire; every wait is bounded by ``timeout``."""
    rng = random.Random(seed)
    deadline = time.monotonic() + timeout
    result = ChaosResult(jobs, workers)
    env = {"DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    # The deploy step, as in production: migrate once, then start the workers
    # (whose own --migrations then finds nothing to do).
    subprocess.run(
        [sys.executable, "-m", "supervisor", "migrate", "--migrations", str(MIGRATIONS)],
        env={**os.environ, **env},
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    with psycopg.connect(url, connect_timeout=10) as conn:
        batch = enqueue(conn, jobs)
    say(f"enqueued {jobs} jobs; starting {workers} workers")
    started = time.monotonic()
    run = SupervisorProcess(
        [CONSUMER, "-w", str(workers), "--migrations", str(MIGRATIONS), "--pool-max-size", "2"],
        ROOT,
        {
            **env,
            "JOBQUEUE_EXIT_WHEN_EMPTY": "1",
            "JOBQUEUE_WORK_MS": str(work_ms),
            "SUPERVISE_LOG_FORMAT": "json",
        },
    )
    monitor = Monitor(url, batch)
    killed: dict[int, int] = {}
    try:
        run.wait_ready(workers, timeout=max(1.0, deadline - time.monotonic()))
        for fraction, kind in plan(kills, db_restarts):
            target = int(fraction * jobs)

            def due(target: int = target) -> bool:
                if run.proc.poll() is not None or monitor.done() >= target:
                    return True
                time.sleep(0.04)  # a gentle poll: the workers need the CPU more
                return False

            wait_until(due, max(0.0, deadline - time.monotonic()), f"{target} jobs done")
            if run.proc.poll() is not None:
                say(f"the run finished before the {kind} planned at {target} jobs")
                break
            if kind == "restart":
                say(f"restarting PostgreSQL at {monitor.done()}/{jobs} jobs done")
                monitor.close()
                restart_db()
                result.db_restarts += 1
                continue
            struck: int | None = None
            while struck is None and run.proc.poll() is None:
                # a victim whose replacement is up, least-killed first (keeps clear of
                # the crash-loop limit, which is about one slot dying again and again)
                victims = wait_until(
                    lambda: (
                        {w: p for w, p in run.ready_pids().items() if alive(p)} or run.proc.poll() is not None
                    ),
                    max(0.0, deadline - time.monotonic()),
                    "a live worker to kill",
                )
                if not isinstance(victims, dict):
                    break  # the run ended: every worker found the queue empty
                fewest = min(killed.get(w, 0) for w in victims)
                worker_id = rng.choice(sorted(w for w in victims if killed.get(w, 0) == fewest))
                # Strike while it holds a job, the case exactly-once is about (it may
                # still commit in the instant before the signal lands).
                mid_job = _poll(functools.partial(monitor.in_transaction, worker_id), 2.0)
                try:
                    os.kill(victims[worker_id], signal.SIGKILL)
                    struck = worker_id
                except ProcessLookupError:  # replaced, or done, while we waited for a job
                    say(f"worker {worker_id} (pid {victims[worker_id]}) was gone before the kill")
            if struck is None:
                say(f"the run finished before the {kind} planned at {target} jobs")
                break
            killed[worker_id] = killed.get(worker_id, 0) + 1
            result.kills += 1
            result.kills_mid_job += mid_job
            say(
                f"kill -9 worker {worker_id} (pid {victims[worker_id]}) at {monitor.done()}/{jobs} jobs done"
                + (", mid-job" if mid_job else "")
            )
        try:
            result.exit_code = run.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"supervise did not finish within {timeout:g} s")
        result.duration_s = time.monotonic() - started
        with psycopg.connect(url, connect_timeout=10) as conn:
            result.audit = audit(conn, batch.first_id, batch.last_id)
    finally:
        monitor.close()
        result.leftovers = run.finish()
        result.retries = len(run.find("database unavailable; retrying"))
        result.crashes = len(run.find("worker crashed"))
        result.output = run.output()
    return result


def _poll(condition: Callable[[], bool], timeout: float) -> bool:
    """True as soon as ``condition`` holds, False if it did not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


@contextlib.contextmanager
def _cluster_or_exit() -> Iterator[tuple[str, Callable[[], None]]]:
    try:
        cm = local_cluster()
        cluster = cm.__enter__()
    except FileNotFoundError as exc:
        sys.exit(f"chaos: {exc}")
    try:
        print(f"started a throwaway PostgreSQL in {cluster.dir}; it is deleted on exit")
        yield cluster.url, lambda: cluster.restart(stop_first=True)
    finally:
        cm.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.jobqueue.chaos", description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=6, help="workers to SIGKILL (default 6)")
    parser.add_argument("--db-restarts", type=int, default=1, help="database restarts (default 1)")
    parser.add_argument("--work-ms", type=float, default=2.0, help="pretend work per job (default 2)")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after S seconds")
    parser.add_argument("--seed", type=int, default=None, help="pick the same victims again")
    args = parser.parse_args(argv)
    with _cluster_or_exit() as (url, restart):
        result = run_chaos(
            url,
            restart,
            jobs=args.jobs,
            workers=args.workers,
            kills=args.kills,
            db_restarts=args.db_restarts,
            work_ms=args.work_ms,
            timeout=args.timeout,
            seed=args.seed,
        )
    print(result.summary())
    if not result.ok or result.exit_code != 0 or result.leftovers:
        print("FAILED\n" + result.output, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
