"""The job-queue example keeps its promise under fire: 10,000 jobs, workers
killed with SIGKILL and the database restarted mid-run, and still every job
is done exactly once (examples/jobqueue, docs/jobqueue.md)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.testing.postgres import LocalCluster

from conftest import Run

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # examples/ is not an installed package
    sys.path.insert(0, str(ROOT))

from examples.jobqueue.chaos import run_chaos  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_chaos_every_job_done_exactly_once(postgres_url: str, postgres_cluster: LocalCluster) -> None:
    lines: list[str] = []
    result = run_chaos(
        postgres_url,
        lambda: postgres_cluster.restart(stop_first=True),
        jobs=10_000,
        workers=4,
        kills=6,
        db_restarts=1,
        # long enough that six kills fit before the queue runs dry: a killed worker
        # that had done work is replaced at once, so the run does not slow down, and
        # each kill may wait up to 2 s for its victim to hold a job (at 5 ms a CI run
        # once emptied the queue 2 s after the fifth kill, before the sixth)
        work_ms=8.0,
        timeout=120,
        say=lines.append,
    )
    story = "\n".join(lines) + "\n" + result.summary() + "\n--- supervise output ---\n" + result.output
    # the chaos really happened while jobs were being done, not after the queue ran dry
    assert result.kills == 6 and result.db_restarts == 1, story
    assert result.crashes >= result.kills, story  # the master saw each kill and replaced the worker
    assert result.retries >= 1, story  # the restart reached the workers; they retried, not crashed
    assert result.audit is not None, story
    assert result.audit.jobs == 10_000, story
    assert result.audit.done == 10_000, story
    assert result.audit.duplicated == 0 and result.audit.without_effect == 0, story
    assert result.audit.exactly_once == result.audit.effects == 10_000, story
    assert result.exit_code == 0, story  # every worker found the queue empty and returned
    assert not result.leftovers, story


DEMO = [sys.executable, "-m", "examples.jobqueue"]


def lines_starting(run: Run, prefix: str) -> list[str]:
    with run._lock:
        return [str(e["event"]) for e in run.events if str(e.get("event", "")).startswith(prefix)]


def test_demo_on_a_given_database_runs_every_job_once_and_exits_0(
    supervise: Callable[..., Run], postgres_url: str
) -> None:
    for _ in range(2):  # the second run finds the tables migrated and audits only its own jobs
        run = supervise("--jobs", "300", "--workers", "2", "--database-url", postgres_url, cmd=DEMO, cwd=ROOT)
        assert run.wait(60) == 0, run.output()
        assert lines_starting(run, "300 of 300 jobs done exactly once by 2 workers in "), run.output()
        assert len(run.find("queue empty; worker finished")) == 2
        assert not lines_starting(run, "no DATABASE_URL")


def test_demo_without_a_database_brings_a_throwaway_one_and_removes_it(
    supervise: Callable[..., Run], postgres_server: object
) -> None:
    # postgres_server: only so that a machine without PostgreSQL skips (or, in CI, fails) here too
    run = supervise("--jobs", "200", "--workers", "2", cmd=DEMO, cwd=ROOT, env={"DATABASE_URL": ""})
    assert run.wait(90) == 0, run.output()
    (notice,) = lines_starting(run, "no DATABASE_URL or --database-url given: started a throwaway PostgreSQL")
    assert notice.endswith("; it is deleted on exit")
    assert lines_starting(run, "200 of 200 jobs done exactly once by 2 workers in "), run.output()
    if " in a local initdb cluster in " in notice:
        cluster_dir = notice.split(" in a local initdb cluster in ")[1].split(";")[0]
        assert not os.path.exists(cluster_dir)


def test_demo_interrupted_stops_between_jobs_and_loses_none(
    supervise: Callable[..., Run], postgres_url: str
) -> None:
    run = supervise("--jobs", "100000", "--database-url", postgres_url, cmd=DEMO, cwd=ROOT)
    run.wait_event("progress", count=4, timeout=30)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert run.wait(30) == 130, run.output()
    assert len(run.find("stopping between jobs")) == 4
    (line,) = lines_starting(run, "stopped early: ")
    assert "jobs done, each exactly once; " in line, line
