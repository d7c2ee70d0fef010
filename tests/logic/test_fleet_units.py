"""The fleet's pure parts: names in pg_stat_activity, the refusal line, the view."""

from __future__ import annotations

import dataclasses
import socket

from supervisor.database import appname
from supervisor.database.fleet import Member, Reservation
from supervisor.database.fleet_view import age, render
from supervisor.settings.config import Config

URL = "postgresql://app:s3cret@db.internal/shop"


def _cfg(**kw: object) -> Config:
    return dataclasses.replace(Config(target="web.app:main", database_url=URL), **kw)


def test_default_fleet_is_the_module_and_the_database() -> None:
    assert appname.fleet(_cfg()) == "web.app/shop"
    assert appname.fleet(_cfg(fleet="checkout")) == "checkout"
    assert appname.fleet(_cfg(no_fleet=True)) is None
    assert appname.fleet(_cfg(database_url=None)) is None
    assert appname.host(_cfg()) == socket.gethostname()


def test_application_name_carries_fleet_host_and_worker_and_fits() -> None:
    assert appname.application_name(_cfg(fleet_host="web-7"), "worker-3") == "web.app:worker-3@web-7"
    assert appname.application_name(_cfg(fleet="shop", fleet_host="web-7"), "master") == "shop:master@web-7"
    assert appname.application_name(_cfg(no_fleet=True), "worker-3") == "web.app:worker-3"
    long = appname.application_name(_cfg(fleet="f" * 80, fleet_host="host-é" * 3), "worker-12")
    assert len(long.encode()) <= 63 and long.endswith(":worker-12@" + "host-é" * 3)  # the label is cut


def _row(host: str, pid: int, workers: int, pool: int = 4, fleet: str = "web.app/shop") -> Reservation:
    return Reservation(fleet, host, pid, workers, pool, workers * pool + 1, 30.0, 1.0, 10.0, True)


def test_refusal_names_the_biggest_members_and_counts_the_rest() -> None:
    me = Member(_cfg(fleet_host="web-new"))
    others = [_row(f"web-{i}", 100 + i, 1 + i % 3) for i in range(12)] + [_row("cron", 7, 1, 2, "jobs/shop")]
    line = me.refusal(4, 4, others, 100, "max_connections 103 less 3 reserved")
    held = sum(r.reserved for r in others)
    assert "\n" not in line
    assert line.startswith(f"fleet connection budget exceeded: this master (web-new pid {me.pid}) needs 4 ")
    assert f"13 other master(s) hold {held} (web-11 pid 111: 13 (3x4+1); " in line
    assert "; 5 more: " in line
    assert f"{held + 17} > 100 (max_connections 103 less 3 reserved); no worker fits here" in line


def test_the_view() -> None:
    assert [age(s) for s in (0, 59.9, 61, 3725, 90061)] == ["0s", "59s", "1m01s", "1h02m", "1d01h"]
    snap = {
        "fleet": None,
        "limit": 27,
        "limit_from": "max_connections 30 less 3 reserved",
        "reserved": 9,
        "headroom": 18,
        "connections_now": 4,
        "contracts": [
            {"version": 8, "file": "0008_drop.sql", "waits_for": "web-2 pid 12 (no record of its migrations)"}
        ],
        "members": [
            {
                **dataclasses.asdict(_row("web-1", 11, 2)),
                "age_s": 75.0,
                "heartbeat_age_s": 1.2,
                "migrations": [1, 7],
            },
            {**dataclasses.asdict(_row("web-2", 12, 2)), "live": False, "heartbeat_age_s": 40.0},
        ],
    }
    lines = render(snap).splitlines()
    assert lines[0].split() == [
        "FLEET",
        "HOST",
        "PID",
        "WORKERS",
        "POOL",
        "MAX",
        "RESERVED",
        "UP",
        "HEARTBEAT",
        "MIGRATIONS",
        "STATE",
    ]
    assert lines[1].split() == [
        *("web.app/shop", "web-1", "11", "2", "4", "9", "1m15s", "1s", "ago", "up", "to", "7", "live")
    ]
    assert lines[2].split()[-7:] == ["40s", "ago", "not", "recorded", "expired", "(not", "counted)"]
    assert (
        lines[3]
        == "contract migration 0008_drop.sql pending: waits for web-2 pid 12 (no record of its migrations)"
    )
    assert lines[4] == (
        "reserved 9 of 27 (max_connections 30 less 3 reserved); headroom 18; 4 client connections open now"
    )
