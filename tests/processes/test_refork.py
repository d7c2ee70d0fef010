"""Reforking (issue 20), with real processes and a real PostgreSQL: the app is
preloaded in a mold of generation 0, never in the master; a warmed worker
becomes the next mold, new workers are forked from it and adopted by the
master, the old generation is retired one at a time, then the mold itself; a
mold killed mid-way and a mold that cannot fork leave the service running.
Every test checks that no connection crossed a fork: the app
(tests/apps/naive.py) opens one at import and keeps it in a global, and each
worker must end up with exactly its own pool and its own reopened global
connection, the mold and the master with none."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
from test_control import status

from conftest import RawConnection, Run, free_port, wait_until


def start(
    supervise,
    url: str,
    schedule: str,
    workers: int = 2,
    env: dict[str, str] | None = None,
    keep_mold: bool = False,
) -> tuple[Run, int]:
    """``keep_mold``: --max-requests (never reached) keeps the mold once its
    generation is complete, for tests that act on a mold."""
    port = free_port()
    run = supervise(
        "naive:app",
        "-w",
        str(workers),
        "--preload",
        "--no-fleet",
        "--pool-min-size",
        "2",
        "--pool-max-size",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "--refork-after",
        schedule,
        *(["--max-requests", "1000000"] if keep_mold else []),
        env={"DATABASE_URL": url, **(env or {})},
    )
    run.wait_ready(workers)
    return run, port


def get(port: int) -> str:
    conn = RawConnection(port, timeout=10)
    try:
        conn.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        answer = conn.read_response()
    finally:
        conn.close()
    assert answer.status == 200, answer
    return answer.body.decode()


def drive(port: int, n: int) -> set[int]:
    """``n`` requests; the worker pids that answered."""
    return {int(get(port).split()[0].removeprefix("pid=")) for _ in range(n)}


def backends(url: str) -> dict[str, int]:
    """application_name -> client backends of the test database (this connection aside)."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "select application_name, count(*) from pg_stat_activity where datname = %s "
            "and pid <> pg_backend_pid() and backend_type = 'client backend' group by 1",
            (dbname,),
        ).fetchall()
    return dict(rows)


def rows(cwd: Path) -> list[dict]:
    return status(cwd)["workers"]


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def settled(cwd: Path, workers: int, generation: int, molds: int = 0) -> list[dict] | None:
    """The rows, once every worker serves from ``generation`` beside ``molds``
    molds (its mold is retired once the generation is complete, unless kept)."""
    current = rows(cwd)
    ready = [r for r in current if r["state"] == "ready" and r["generation"] == generation]
    mold_rows = [r for r in current if r["state"] == "mold"]
    others = [r for r in current if r["state"] not in ("ready", "mold")]
    if len(ready) == workers and len(mold_rows) == molds and not others and len(current) == workers + molds:
        return current
    return None


def title(pid: int) -> str:
    return subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout


def assert_no_connection_crossed(url: str, workers: int, port: int) -> None:
    """Each worker: its pool (2) and its own global connection; the mold and the master: none."""
    expected = {**{f"naive:worker-{i}": 2 for i in range(1, workers + 1)}, "naive:global": workers}
    assert wait_until(
        lambda: drive(port, 5) and backends(url) == expected,  # until every worker has answered once
        timeout=10,
        what=f"exactly {workers} x 2 pooled and {workers} global backends",
    )


def test_the_app_is_preloaded_in_a_mold_and_never_in_the_master(supervise, postgres_url, tmp_path):
    """--preload with reforking: the master never imports the app (it would
    keep a copy no worker shares once they descend from a later mold); the
    mold of generation 0 does, closes what the import opened, and forks the
    first workers, which the master adopts."""
    imports = tmp_path / "imports"
    run, port = start(supervise, postgres_url, "1000", env={"NAIVE_IMPORTS": str(imports)})
    first = set(run.ready_pids().values())
    (seed,) = run.wait_event("mold ready; forking workers from it", generation=0)
    assert run.find("target preloaded in the mold") and not run.find("target preloaded")
    assert all(parent(pid) == run.pid for pid in (*first, seed["mold_pid"])), "not adopted by the master"
    assert "supervise: mold gen 0 naive:app" in title(seed["mold_pid"])
    importers = {int(pid) for pid in imports.read_text().split()}
    assert seed["mold_pid"] in importers and run.pid not in importers  # (and the start-up's probe)
    assert len(importers) == 2
    assert_no_connection_crossed(postgres_url, 2, port)  # its import's connection closed in the mold
    current = settled(tmp_path, 2, 0, molds=1)
    assert current is not None and {r["worker_pid"] for r in current if r["state"] == "mold"} == {
        seed["mold_pid"]
    }
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert backends(postgres_url) == {}


def test_a_warm_worker_becomes_the_mold_and_its_children_replace_every_worker(
    supervise, postgres_url, tmp_path
):
    run, port = start(supervise, postgres_url, "20")
    first = set(run.ready_pids().values())
    assert drive(port, 60) <= first
    (ready,) = run.wait_event("mold ready; forking workers from it", generation=1, timeout=20)
    mold = ready["mold_pid"]
    assert mold in first  # the mold was a warm worker
    # every worker is new, and then the mold is retired: nothing is left for it to fork
    current = wait_until(lambda: settled(tmp_path, 2, 1), timeout=30, what="generation 1 serving alone")
    workers = {r["worker_pid"] for r in current if r["state"] == "ready"}
    assert not workers & first
    assert {r["worker"] for r in current if r["state"] == "ready"} == {1, 2}  # ids kept
    assert all(parent(pid) == run.pid for pid in workers), "not adopted by the master"
    assert run.find("generation complete; retiring its mold", mold_pid=mold, generation=1)
    assert wait_until(lambda: not first & set(_alive(first)), timeout=10)  # the old ones and the molds
    assert drive(port, 40) <= workers
    assert_no_connection_crossed(postgres_url, 2, port)
    retired = run.find("worker exited", reason="recycled: refork: generation 1 is ready")
    assert len(retired) == 1 and retired[0]["status"] == "exited with code 0"
    assert not run.find("worker crashed") and "0x" not in run.output()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    assert backends(postgres_url) == {}


def test_with_max_requests_the_mold_stays_and_forks_the_replacements(supervise, postgres_url, tmp_path):
    run, port = start(supervise, postgres_url, "20", keep_mold=True)
    drive(port, 60)
    (ready,) = run.wait_event("mold ready; forking workers from it", generation=1, timeout=20)
    current = wait_until(
        lambda: settled(tmp_path, 2, 1, molds=1), timeout=30, what="generation 1 and its mold"
    )
    assert {r["worker_pid"] for r in current if r["state"] == "mold"} == {ready["mold_pid"]}
    assert "supervise: mold gen 1 naive:app" in title(ready["mold_pid"])
    assert not run.find("generation complete; retiring its mold")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_a_crash_after_the_mold_retired_is_replaced_warm_by_a_new_promotion(
    supervise, postgres_url, tmp_path
):
    """The master forks a crashed worker's replacement itself (cold, as it holds
    no app); a worker of the generation is promoted again to replace it warm."""
    run, port = start(supervise, postgres_url, "20")
    drive(port, 60)
    current = wait_until(lambda: settled(tmp_path, 2, 1), timeout=30, what="generation 1 serving alone")
    victim = next(r["worker_pid"] for r in current if r["worker"] == 2)
    subprocess.run(["kill", "-KILL", str(victim)], check=True)
    assert run.wait_event("worker crashed", worker_pid=victim)
    drive(port, 10)  # the service answers throughout
    # 10 s later (the pause that gathers a burst of replacements): promotion, then generation 1 again
    assert run.wait_event("promoting a worker to mold", count=2, timeout=30)
    wait_until(lambda: settled(tmp_path, 2, 1), timeout=40, what="generation 1 again, every worker warm")
    assert_no_connection_crossed(postgres_url, 2, port)
    assert "0x" not in run.output()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_each_generation_keeps_exactly_its_own_connections(supervise, postgres_url, tmp_path):
    run, port = start(supervise, postgres_url, "15,30,45")
    for generation in (1, 2, 3):
        drive(port, 100)
        wait_until(lambda g=generation: settled(tmp_path, 2, g), timeout=30, what=f"generation {generation}")
        assert_no_connection_crossed(postgres_url, 2, port)
    drive(port, 100)  # the schedule is done: no fourth generation, and no mold
    assert settled(tmp_path, 2, 3) and len(run.find("promoting a worker to mold")) == 3
    assert "0x" not in run.output()


def test_a_mold_killed_mid_refork_is_replaced_by_the_next_promotion(supervise, postgres_url, tmp_path):
    run, port = start(supervise, postgres_url, "20", keep_mold=True)
    drive(port, 60)
    (ready,) = run.wait_event("mold ready", generation=1, timeout=20)
    mold = ready["pid"]
    subprocess.run(["kill", "-KILL", str(mold)], check=True)  # mid-refork: its children may still be booting
    assert run.wait_event("mold exited; the master forks workers until another is promoted", timeout=10)
    assert drive(port, 20)  # the service answers throughout
    # a worker of the current generation is promoted again, keeping the generation
    assert run.wait_event("mold ready; forking workers from it", count=2, generation=1, timeout=30)
    current = wait_until(
        lambda: settled(tmp_path, 2, 1, molds=1), timeout=30, what="generation 1 serving again"
    )
    assert mold not in {r["worker_pid"] for r in current}
    assert_no_connection_crossed(postgres_url, 2, port)
    assert not run.find("giving up") and "0x" not in run.output()


_FAIL_IN_MOLD = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* fork() fails with EAGAIN in a process titled "mold" while the file named by
   FAIL_FORK_IN_MOLD exists: a mold that cannot fork (ulimit -u, a full table) */
pid_t fork(void) {
    static pid_t (*real)(void) = 0;
    if (!real) real = (pid_t (*)(void))dlsym(RTLD_NEXT, "fork");
    const char *flag = getenv("FAIL_FORK_IN_MOLD");
    if (flag && access(flag, F_OK) == 0) {
        char title[256] = {0};
        int fd = open("/proc/self/cmdline", O_RDONLY);
        if (fd >= 0) { read(fd, title, sizeof title - 1); close(fd); }
        if (strstr(title, "mold")) { errno = EAGAIN; return -1; }
    }
    return real();
}
"""


def test_a_mold_that_cannot_fork_leaves_the_workers_in_place(supervise, postgres_url, tmp_path):
    pytest.importorskip("setproctitle")  # the shim finds the mold by its title
    source, shim, flag = tmp_path / "fail.c", tmp_path / "fail.so", tmp_path / "no-fork"
    source.write_text(_FAIL_IN_MOLD)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(source), "-ldl"], check=True, timeout=60)
    env = {"LD_PRELOAD": str(shim), "FAIL_FORK_IN_MOLD": str(flag)}
    run, port = start(supervise, postgres_url, "20", env=env)
    flag.touch()  # from now on (the mold of generation 0 has forked the first workers)
    drive(port, 60)
    run.wait_event("mold ready", generation=1, timeout=20)
    failed = run.wait_event("could not start a worker", timeout=10)
    assert (
        "the mold could not fork" in failed[0]["error"]
        and "Resource temporarily unavailable" in failed[0]["error"]
    )
    assert drive(port, 20)  # the other worker keeps serving
    assert run.ready_pids()  # and the master lives
    flag.unlink()  # the machine has room again: the slot is refilled from the mold
    wait_until(lambda: settled(tmp_path, 2, 1), timeout=40, what="generation 1 serving")
    assert_no_connection_crossed(postgres_url, 2, port)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def _alive(pids: set[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]
