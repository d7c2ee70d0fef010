"""External kills (the OOM killer's, an operator's) are not a crash loop.

A worker that booted and served is replaced at once, however often it is
killed, and the master never gives up on it; backoff and exit 6 stay for
workers that die before or right after becoming ready (tests/processes/test_failures.py).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from datetime import datetime

import pytest
from test_http import keep_alive_load

from conftest import alive, free_port, wait_until

KILLS = 30  # one every 2 s: a minute of the OOM killer picking the same slot
EVERY_S = 2.0
CLIENTS = 4


def _at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_a_slot_killed_every_2s_for_a_minute_under_load_keeps_serving(supervise):
    port = free_port()
    # Reforking off: with it, a kill can land on a worker the refork is retiring (a stop, not a
    # crash) and the count below would be off by one; kills during a refork are
    # test_refork_hostile.py's (the promoted worker, the mold, a worker forked by the mold).
    run = supervise(
        "wsgipid:app", "-w", "2", "--preload", "--refork-after", "off",
        "--crash-limit", "3", "--bind", f"127.0.0.1:{port}",
    )  # fmt: skip
    run.wait_ready(2)
    respawn: list[float] = []
    # a new connection per request, so every worker keeps getting clients (keep-alive
    # clients would all stay on the workers that survived the first kill)
    with keep_alive_load(port, clients=CLIENTS, keep_alive=False) as results:
        wait_until(lambda: len(results) > 100, 10, "load to start")
        for kill in range(KILLS):
            started = time.monotonic()
            victim = run.ready_pids()[1]
            # it must have served before it is killed, as a worker the OOM killer picks has
            # (workers count what they served every 0.25 s; the kill waits for that count)
            wait_until(
                lambda v=victim: any(b == f"pid={v}" for s, b in results[-200:]), 10, "the victim to serve"
            )
            time.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
            crashed = run.wait_event("worker crashed", count=kill + 1, timeout=10)[-1]
            assert crashed["worker_pid"] == victim
            assert crashed["restart_in_s"] == 0.0 and crashed["crashes_in_a_row"] == 0, crashed
            reaped = _at(crashed)

            def replacement(v: int = victim, t: float = reaped) -> dict[str, object] | None:
                fresh = [
                    e for e in run.find("worker ready", worker=1) if e["worker_pid"] != v and _at(e) >= t
                ]
                return fresh[0] if fresh else None

            ready = wait_until(replacement, 10, "a ready replacement")
            respawn.append(_at(ready) - reaped)
            time.sleep(max(0.0, EVERY_S - (time.monotonic() - started)))
    assert alive(run.pid) and not run.find("worker crashed", crashes_in_a_row=1), "the master counted a kill"
    assert not run.find("worker crashed", restart_in_s=0.5), "a healthy worker's death was backed off"
    failed = [r for r in results if r[0] != "ok"]
    served = len(results) - len(failed)
    # a kill can fail at most the requests in flight on the victim's connections
    assert len(failed) <= KILLS * CLIENTS, failed[:5]
    print(
        f"\n{KILLS} kills in {KILLS * EVERY_S:.0f} s: master kept running; replacement ready "
        f"{statistics.median(respawn) * 1000:.1f} ms median, {max(respawn) * 1000:.1f} ms max "
        f"after the death was reaped; {len(failed)} failed of {len(results)} requests ({served} served)"
    )
    assert max(respawn) < 2.0, respawn  # preload: a fork, not an import (about 10 ms on a quiet machine)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


_FAIL_FORK = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* fork() fails with EAGAIN, as under a process limit (ulimit -u), for the
   calls numbered FAIL_FORK_FROM to FAIL_FORK_FROM + FAIL_FORK_COUNT - 1 */
pid_t fork(void) {
    static int calls = 0;
    static pid_t (*real)(void) = 0;
    if (!real) real = (pid_t (*)(void))dlsym(RTLD_NEXT, "fork");
    const char *from = getenv("FAIL_FORK_FROM"), *count = getenv("FAIL_FORK_COUNT");
    calls++;
    if (from && count && calls >= atoi(from) && calls < atoi(from) + atoi(count)) {
        errno = EAGAIN;
        return -1;
    }
    return real();
}
"""


def test_a_failed_fork_is_retried_with_backoff_and_the_master_lives(supervise, tmp_path):
    """What `ulimit -u` or a full process table does to fork(): the master
    says so, retries the slot with backoff, and keeps the workers it has."""
    source = tmp_path / "failfork.c"
    source.write_text(_FAIL_FORK)
    shim = tmp_path / "failfork.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(source), "-ldl"], check=True, timeout=60)
    # with --preload and no reforking the master forks nothing but workers: fork 1 is
    # worker 1, forks 2-4 fail
    env = {"LD_PRELOAD": str(shim), "FAIL_FORK_FROM": "2", "FAIL_FORK_COUNT": "3"}
    run = supervise("mains:wait", "-w", "2", "--preload", "--refork-after", "off", env=env)
    run.wait_event("all workers ready", timeout=20)
    failures = run.find("could not start a worker", worker=2)
    assert len(failures) == 3
    assert all(f["error"] == "fork failed: Resource temporarily unavailable" for f in failures)
    assert run.find("workers could not be started; retrying with backoff", failed=1)
    backoffs = [c["restart_in_s"] for c in run.find("worker crashed", worker=2)]
    assert backoffs == [0.0, 0.5, 1.0]
    assert len(run.find("worker ready", worker=1)) == 1  # the worker it had was never touched
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_an_idle_worker_killed_every_time_it_is_ready_is_never_a_crash_loop(supervise):
    """A job worker with nothing to do has done no work when it is killed;
    having been ready past the healthy time, it is replaced at once, however
    often, and the master never gives up (--crash-limit 2: it would by the
    third kill if these counted)."""
    run = supervise("mains:wait", "-w", "1", "--crash-limit", "2")
    for kill in range(1, 6):
        (ready,) = run.wait_event("worker ready", count=kill, timeout=15)[kill - 1 : kill]
        pid = ready["worker_pid"]
        time.sleep(1.2)  # ready past the healthy time (1 s): the point of the test, not a wait for it
        os.kill(pid, signal.SIGKILL)
        run.wait_event("worker crashed", count=kill, timeout=10)
        assert alive(run.pid), run.output()
    crashed = run.find("worker crashed")
    assert all(e["restart_in_s"] == 0.0 for e in crashed), crashed  # replaced at once, every time
    assert not run.find("giving up")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
