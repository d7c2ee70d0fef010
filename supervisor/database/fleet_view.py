"""``supervise status --fleet``: the fleet's reservations, read from PostgreSQL
itself (no running master is asked), as a table or as one JSON object."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import psycopg

from supervisor.control import client
from supervisor.database import budget, fleet
from supervisor.errors import ConfigError
from supervisor.redact import redact_secret, scrub
from supervisor.settings.config import Config


def snapshot(config: Config, name: str | None) -> dict[str, Any]:
    """Members (of fleet ``name``, or of every fleet), the limit they share, and
    the headroom left. Expired rows are listed (``live`` false) but not counted."""
    url = config.database_url or ""
    try:
        with fleet.connect(config, "status") as conn:
            limit, how = budget.limit_for(conn, config)
            rows = fleet.members(conn, name)
            now = conn.execute(
                "select count(*) from pg_stat_activity where backend_type = 'client backend'"
            ).fetchone()
    except psycopg.Error as exc:
        reason = scrub(str(exc).strip(), url) or type(exc).__name__
        raise ConfigError(
            f"cannot read the fleet from {redact_secret(url)}: {fleet.first_line(reason)}"
        ) from None
    counted = fleet.counted(rows, name, config) if name else [r for r in rows if r.live]
    reserved = sum(r.reserved for r in counted)
    return {
        "contracts": _contracts(config),
        "fleet": name,
        "limit": limit,
        "limit_from": how,
        "reserved": reserved,
        "headroom": limit - reserved,
        "connections_now": int(now[0]) if now else 0,
        "members": [
            {**asdict(r), "age_s": round(r.age_s, 1), "heartbeat_age_s": round(r.heartbeat_age_s, 1)}
            for r in rows
        ],
    }


def _contracts(config: Config) -> list[dict[str, Any]]:
    """The pending contract migrations of ``--migrations`` (a SQL directory),
    and the masters each waits for; [] without one."""
    from supervisor import migrate

    if not config.migrations or migrate.migrator_for(config.migrations).name != "sqldir":
        return []
    return [
        {"version": r.version, "file": r.file, "waits_for": r.waits_for}
        for r in migrate.status(config)
        if r.contract and r.state == "pending"
    ]


def age(seconds: float) -> str:
    """12s, 5m03s, 2h04m, 3d05h."""
    return client.age(seconds, tenths=False)


def render(snap: dict[str, Any]) -> str:
    header = (
        "FLEET",
        "HOST",
        "PID",
        "WORKERS",
        "POOL MAX",
        "RESERVED",
        "UP",
        "HEARTBEAT",
        "MIGRATIONS",
        "STATE",
    )
    rows = [
        (
            m["fleet"],
            m["host"],
            str(m["pid"]),
            str(m["workers"]),
            str(m["pool_max"]),
            str(m["reserved"]),
            age(m["age_s"]),
            age(m["heartbeat_age_s"]) + " ago",
            f"up to {max(m['migrations'])}" if m.get("migrations") else "not recorded",
            "live" if m["live"] else "expired (not counted)",
        )
        for m in snap["members"]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    if not rows:
        lines = ["no members" + (f" in fleet {snap['fleet']!r}" if snap["fleet"] else "")]
    for c in snap.get("contracts", []):
        waits = (
            f"waits for {c['waits_for']}"
            if c["waits_for"]
            else "due now (a master applies it at its next look)"
        )
        lines.append(f"contract migration {c['file']} pending: {waits}")
    lines.append(
        f"reserved {snap['reserved']} of {snap['limit']} ({snap['limit_from']}); "
        f"headroom {snap['headroom']}; {snap['connections_now']} client connections open now"
    )
    return "\n".join(lines)


def show(config: Config, name: str | None, as_json: bool) -> str:
    snap = snapshot(config, name)
    return json.dumps(snap, indent=2) if as_json else render(snap)
