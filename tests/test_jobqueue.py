"""The job-queue example keeps its promise under fire: 10,000 jobs, workers
killed with SIGKILL and the database restarted mid-run, and still every job
is done exactly once (examples/jobqueue, docs/jobqueue.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from supervisor.testing.postgres import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
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
