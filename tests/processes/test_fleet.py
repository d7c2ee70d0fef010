"""The fleet-wide connection budget: several masters on this machine stand in
for hosts (distinct --fleet-host), against a PostgreSQL of its own with a small
max_connections, so the limit is the server's and not an option."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from test_http import _health

from supervisor.database import fleet
from supervisor.testing.postgres import ENV_REQUIRE, LocalCluster, fresh_database, local_cluster, pg_bindir

from conftest import APPS, Run, backends, free_port, wait_until

MAX_CONNECTIONS = 30
LIMIT = MAX_CONNECTIONS - 3  # superuser_reserved_connections
HOW = f"max_connections {MAX_CONNECTIONS} less 3 reserved"
LEASE = 3.0
EACH = 2 * 4 + 1  # -w 2 --pool-max-size 4, plus the master's own connection


@pytest.fixture(scope="module")
def small_cluster() -> Iterator[LocalCluster]:
    if pg_bindir() is None:
        message = "needs initdb/pg_ctl for a server with a small max_connections"
        if os.environ.get(ENV_REQUIRE, "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with local_cluster(max_connections=MAX_CONNECTIONS) as cluster:
        yield cluster


@pytest.fixture
def url(small_cluster: LocalCluster) -> Iterator[str]:
    with fresh_database(small_cluster.url, "fleet") as url:
        yield url


Start = Callable[..., Run]


@pytest.fixture
def member(supervise: Start, url: str) -> Start:
    def start(host: str, *args: str, workers: int = 2) -> Run:
        return supervise(
            "mains:wait",
            "-w",
            str(workers),
            "--pool-max-size",
            "4",
            "--fleet-host",
            host,
            "--fleet-lease",
            str(LEASE),
            *args,
            env={"DATABASE_URL": url},
        )

    return start


def live(url: str) -> dict[str, fleet.Reservation]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {r.host: r for r in fleet.members(conn) if r.live}


def waiting(url: str) -> int:
    """The fleet's connections waiting on a lock (the table's, or the check's)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
            "and application_name like '%:fleet@%'"
        ).fetchone()
    return int(row[0]) if row else 0


def stop(*runs: Run) -> None:
    for run in runs:
        run.signal(signal.SIGTERM)
    for run in runs:
        assert run.wait() == 0


def test_the_member_that_would_overflow_is_refused_at_start_and_at_ttin(member: Start, url: str) -> None:
    a, b = member("host-a"), member("host-b")
    a.wait_ready(2)
    b.wait_ready(2)
    assert {h: r.reserved for h, r in live(url).items()} == {"host-a": EACH, "host-b": EACH}

    c = member("host-c", workers=3)
    assert c.wait() == 2
    assert c.final(2) == (
        f"fleet connection budget exceeded: this master (host-c pid {c.pid}) needs 3 workers x "
        f"pool max size 4 + 1 = 13, and 2 other master(s) hold 18 (host-a pid {a.pid}: 9 (2x4+1); "
        f"host-b pid {b.pid}: 9 (2x4+1)): 31 > {LIMIT} ({HOW}); 2 workers fit here: lower --workers "
        "or --pool-max-size here or on the other masters, or raise --max-db-connections if the "
        "server allows more"
    )
    assert not c.find("worker spawned")
    assert set(live(url)) == {"host-a", "host-b"}

    c = member("host-c")  # what fits: 27 of 27
    c.wait_ready(2)
    a.signal(signal.SIGTTIN)
    refused = a.wait_event("scale-up refused")[0]["error"]
    assert refused.startswith(
        f"fleet connection budget exceeded: this master (host-a pid {a.pid}) needs 3 workers x "
        f"pool max size 4 + 1 = 13, and 2 other master(s) hold 18"
    )
    assert "31 > 27" in refused and "2 workers fit here" in refused
    assert live(url)["host-a"].workers == 2
    assert len(a.find("worker spawned")) == 2  # the running workers are kept, none added

    stop(c)  # a clean exit gives its room back at once, not at the end of its lease
    assert set(live(url)) == {"host-a", "host-b"}
    a.signal(signal.SIGTTIN)
    a.wait_ready(3)
    assert live(url)["host-a"].reserved == 13
    a.signal(signal.SIGTTOU)  # a smaller reservation is recorded by the next refresh
    wait_until(lambda: live(url)["host-a"].reserved == EACH, 10, "host-a's reservation to shrink")
    stop(a, b)
    assert live(url) == {}


def test_four_masters_started_at_once_never_over_reserve(member: Start, url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(fleet.DDL)
    # A barrier: the table locked until all four are inside their check, so
    # they are let go at the same instant (one after the other, if the lock works).
    barrier = psycopg.connect(url)
    barrier.execute(f"lock table {fleet.TABLE} in exclusive mode")
    try:
        runs = [member(f"host-{i}") for i in range(4)]  # 4 x 9 = 36 asked, 27 allowed: one must lose
        wait_until(lambda: waiting(url) == 4, 30, "four masters inside their check")
    finally:
        barrier.close()
    outcome: dict[int, str] = {}

    def settled() -> bool:
        for i, run in enumerate(runs):
            if run.proc.poll() is not None:
                outcome[i] = f"exit {run.proc.returncode}"
            elif len(run.find("worker ready")) >= 2:
                outcome[i] = "ready"
        return len(outcome) == 4

    wait_until(settled, 60, "every master to be ready or refused")
    assert sorted(outcome.values()) == ["exit 2", "ready", "ready", "ready"], outcome
    loser = runs[next(i for i, o in outcome.items() if o == "exit 2")]
    assert loser.final(2).startswith("fleet connection budget exceeded")
    held = live(url)
    assert len(held) == 3 and sum(r.reserved for r in held.values()) == 27 <= LIMIT
    stop(*(run for run in runs if run is not loser))


def test_a_killed_master_stops_counting_within_its_lease(member: Start, url: str) -> None:
    runs = [member(f"host-{i}") for i in range(3)]
    for run in runs:
        run.wait_ready(2)
    victim = runs[2]
    victim.signal(signal.SIGKILL)
    killed = time.monotonic()
    assert victim.wait() == -signal.SIGKILL

    early = member("host-new")  # the dead master still counts: refused, naming it
    assert early.wait() == 2
    assert f"host-2 pid {victim.pid}: 9" in early.final(2)

    wait_until(lambda: "host-2" not in live(url), LEASE + 5, "the killed master's lease to end")
    expired_after = time.monotonic() - killed
    assert expired_after <= LEASE + 5
    late = member("host-new")
    late.wait_ready(2)
    assert set(live(url)) == {"host-0", "host-1", "host-new"}
    stop(runs[0], runs[1], late)


def test_a_postgresql_restart_keeps_the_fleet_and_its_limit(
    member: Start, url: str, small_cluster: LocalCluster
) -> None:
    lease = 6.0  # room for a master to start while a frozen one's lease still runs
    a = member("host-a", "--fleet-lease", str(lease))
    b = member("host-b", "--fleet-lease", str(lease))
    a.wait_ready(2)
    b.wait_ready(2)
    b.signal(signal.SIGSTOP)  # b cannot refresh at all: only the restart rule keeps it counted
    try:
        small_cluster.stop_server()
        down = time.monotonic()
        a.wait_event("fleet lease not refreshed", timeout=20)
        # Down longer than a lease: by their heartbeats alone, both would have expired.
        wait_until(lambda: time.monotonic() > down + lease + 1, lease + 5, "a lease to pass")
        small_cluster.restart()
        held = live(url)
        assert set(held) == {"host-a", "host-b"}
        assert held["host-b"].heartbeat_age_s > lease  # counted, though not refreshed

        c = member("host-c", workers=3)  # 13 fits beside a alone (22 <= 27), not beside both
        assert c.wait(30) == 2
        assert "2 other master(s) hold 18" in c.final(2)
    finally:
        b.signal(signal.SIGCONT)
    a.wait_event("fleet lease refreshed again", timeout=20)
    wait_until(lambda: live(url)["host-b"].heartbeat_age_s < lease, 20, "b to refresh its lease")
    stop(a, b)


def test_a_reload_that_grows_the_pools_is_checked_against_the_fleet(
    member: Start, supervise: Start, url: str, tmp_path: Path
) -> None:
    a, b = member("host-a"), member("host-b")
    a.wait_ready(2)
    b.wait_ready(2)
    config = tmp_path / "supervise.toml"
    config.write_text('workers = 2\npool_max_size = 4\nfleet_host = "host-c"\n')
    c = supervise("mains:wait", env={"DATABASE_URL": url})
    c.wait_ready(2)
    config.write_text('workers = 2\npool_max_size = 5\nfleet_host = "host-c"\n')
    c.signal(signal.SIGHUP)  # 2 x 5 + 1 = 11 beside 18: 29 > 27
    kept = c.wait_event(
        "reload keeps the current number of workers and pool size: the new ones would exceed "
        "the connection budget",
        timeout=20,
    )[0]
    assert "needs 2 workers x pool max size 5 + 1 = 11, and 2 other master(s) hold 18" in kept["error"]
    c.wait_event("reload complete", timeout=30)
    assert {e["max_size"] for e in c.find("database pool open")} == {4}
    assert live(url)["host-c"].reserved == EACH

    stop(b)
    c.signal(signal.SIGHUP)  # beside host-a alone: 11 + 9 fits
    c.wait_event("reload complete", count=2, timeout=30)
    assert live(url)["host-c"].reserved == 11
    assert any(e["max_size"] == 5 for e in c.find("database pool open"))
    stop(a, c)


def test_no_fleet_counts_this_master_alone(supervise: Start, url: str) -> None:
    run = supervise("mains:wait", "-w", "1", "--no-fleet", env={"DATABASE_URL": url})
    run.wait_ready(1)
    assert {app for _, app in backends(url)} == {"mains:worker-1"}
    with psycopg.connect(url, autocommit=True) as conn:
        assert fleet.members(conn) == []  # not even the table
        assert conn.execute("select to_regclass(%s)", (fleet.TABLE,)).fetchone() == (None,)
    stop(run)


def test_readyz_application_name_and_the_fleet_view(member: Start, url: str, supervise: Start) -> None:
    port = free_port()
    a = member("host-a", "--fleet", "shop", "--health-bind", f"127.0.0.1:{port}")
    a.wait_event("all workers ready")
    status, body = _health(port, "/readyz")
    assert status == 200
    mine = body["fleet"]
    assert (mine["name"], mine["host"], mine["workers"], mine["pool_max"], mine["reserved"]) == (
        "shop",
        "host-a",
        2,
        4,
        EACH,
    )
    assert {app for _, app in backends(url)} == {"shop:worker-1@host-a", "shop:worker-2@host-a"}

    env = {**os.environ, "PYTHONPATH": str(APPS)}
    env.pop("SUPERVISE_FLEET", None)
    view = subprocess.run(
        [sys.executable, "-m", "supervisor", "status", "--fleet", "--json", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert view.returncode == 0, view.stderr
    data = json.loads(view.stdout)
    assert data["limit"] == LIMIT and data["reserved"] == EACH and data["headroom"] == LIMIT - EACH
    (row,) = data["members"]
    assert (row["fleet"], row["host"], row["pid"], row["reserved"], row["live"]) == (
        "shop",
        "host-a",
        a.pid,
        EACH,
        True,
    )
    text = subprocess.run(
        [sys.executable, "-m", "supervisor", "status", "--fleet", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert text.returncode == 0, text.stderr
    assert f"shop   host-a  {a.pid}" in text.stdout
    assert f"headroom {LIMIT - EACH}" in text.stdout
    stop(a)
