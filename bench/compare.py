#!/usr/bin/env python3
"""Throughput of pg-supervise next to its peers, in alternating rounds, as ratios.

Each scenario is one path of the test apps served by ours (first in its row
of SCENARIOS) and by each peer of the launch table that is installed. A round
runs every scenario once, each server in turn (the order rotates from round to
round so that no server always runs first or last): start it, wait until all
workers answer, one warm-up wrk run (discarded), one measured run, stop it.
The ratio ours / peer is taken within each round, then summarised over the
rounds: on a shared machine the ratio is the figure that holds.

/db is one `SELECT 1` per request against a local PostgreSQL (PERF_DB_URL,
else a throwaway cluster on loopback): the peers through the apps' own plain
pool, ours through its own per-worker pool with --pool-check-idle 2 (default)
or 0 (a round trip on every checkout; the *-check-window scenarios).

    .venv/bin/python bench/compare.py                              # all, 3 rounds of wrk -d8s
    .venv/bin/python bench/compare.py --scenario asgi-db --rounds 5
    .venv/bin/python bench/compare.py --smoke                      # 1 s runs, 1 round: it works
    .venv/bin/python bench/compare.py --table results/a.jsonl results/b.jsonl --scenario asgi-db
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from typing import Any

from harness import cli, load, pg, results
from harness.peers import PEERS


@dataclass(frozen=True)
class Scenario:
    path: str
    servers: tuple[str, ...]  # ours first: the ratios are ours / each other


SCENARIOS: dict[str, Scenario] = {
    "asgi-hello": Scenario("/", ("pg-supervise", "uvicorn-std", "gunicorn-uvicorn-std", "granian-asgi")),
    "asgi-hello-access-log": Scenario("/", ("pg-supervise-access-log", "pg-supervise")),
    "asgi-db-access-log": Scenario("/db", ("pg-supervise-pool-access-log", "pg-supervise-pool")),
    "wsgi-hello": Scenario("/", ("pg-supervise-wsgi", "gunicorn-sync", "gunicorn-gthread", "granian-wsgi")),
    "asgi-db": Scenario("/db", ("pg-supervise-pool", "uvicorn-std", "gunicorn-uvicorn-std", "granian-asgi")),
    "wsgi-db": Scenario(
        "/db", ("pg-supervise-wsgi-pool", "gunicorn-gthread", "gunicorn-sync", "granian-wsgi")
    ),
    # --http granian against our default engine (and granian's own server, for scale)
    "asgi-hello-engine": Scenario("/", ("pg-supervise-granian", "pg-supervise", "granian-asgi")),
    "wsgi-hello-engine": Scenario("/", ("pg-supervise-granian-wsgi", "pg-supervise-wsgi", "granian-wsgi")),
    "asgi-db-engine": Scenario("/db", ("pg-supervise-granian-pool", "pg-supervise-pool", "granian-asgi")),
    "wsgi-db-engine": Scenario(
        "/db", ("pg-supervise-granian-wsgi-pool", "pg-supervise-wsgi-pool", "granian-wsgi")
    ),
    "asgi-db-check-window": Scenario("/db", ("pg-supervise-pool", "pg-supervise-pool-check-every")),
    "flask-hello": Scenario("/", ("pg-supervise-flask", "gunicorn-gthread-flask", "granian-flask")),
    "flask-db": Scenario("/db", ("pg-supervise-flask-pool", "gunicorn-gthread-flask", "granian-flask")),
    "fastapi-hello": Scenario("/", ("pg-supervise-fastapi", "uvicorn-std-fastapi", "granian-fastapi")),
    "fastapi-db": Scenario("/db", ("pg-supervise-fastapi-pool", "uvicorn-std-fastapi", "granian-fastapi")),
    "wsgi-db-check-window": Scenario("/db", ("pg-supervise-wsgi-pool", "pg-supervise-wsgi-pool-check-every")),
    # --preload's defaults (reforking: the runs include both reforks) against reforking off
    "asgi-db-refork": Scenario(
        "/db", ("pg-supervise-pool-preload", "pg-supervise-pool-preload-no-refork", "uvicorn-std")
    ),
    "wsgi-db-refork": Scenario(
        "/db",
        ("pg-supervise-wsgi-pool-preload", "pg-supervise-wsgi-pool-preload-no-refork", "gunicorn-gthread"),
    ),
}


def one_run(args: argparse.Namespace, name: str, path: str, db: str) -> dict[str, Any]:
    peer = PEERS[name]
    launch = cli.Launch(name, peer.cmd, {**peer.env, "PERF_DB_URL": db} if db else dict(peer.env))
    srv = launch.server(args.workers, cli.logpath(args, launch, f"compare{path.replace('/', '-')}"))
    srv.start()
    try:
        _, ready, _ = load.probe_ready(srv.port, args.workers, timeout=60)
        if ready is None:
            return {"error": "workers never became ready", "log": [t for _, _, t in srv.lines[-10:]]}
        if args.warmup:
            load.run_wrk(srv.port, path, args.threads, args.conns, args.warmup)
        return load.run_wrk(srv.port, path, args.threads, args.conns, args.duration)
    finally:
        srv.stop(cli.sig(peer.term_signal))


def table(recs: list[dict[str, Any]]) -> str:
    rows = ["| scenario | server | req/s median (min–max) | ours / it, per round |", "|---|---|---|---|"]
    for name, sc in SCENARIOS.items():
        mine = [r for r in recs if r["scenario"] == name]
        if not mine:
            continue
        rps = {(r["label"], r["round"]): r["run"].get("rps") for r in mine}
        ours = sc.servers[0]
        for server in sc.servers:
            s = results.summary(v for (lab, _), v in rps.items() if lab == server)
            if not s["n"]:
                continue
            ratios = [
                rps[(ours, rd)] / v
                for (lab, rd), v in rps.items()
                if lab == server and v and rps.get((ours, rd))
            ]
            r = results.summary(ratios)
            ratio = (
                "—" if server == ours or not r["n"] else f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f})"
            )
            rows.append(
                f"| {name} | {server} | {s['median']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f}) | {ratio} |"
            )
    return "\n".join(rows)


def recorded(paths: list[str], scenarios: list[str] | None) -> list[dict[str, Any]]:
    """The compare records of ``paths``; round numbers made distinct per file,
    so that ratios are still taken within one round of one run."""
    recs = []
    for index, path in enumerate(paths):
        for rec in results.read([path]):
            if rec.get("bench") == "compare" and (not scenarios or rec.get("scenario") in scenarios):
                recs.append({**rec, "round": (index, rec["round"])})
    return recs


def main() -> None:
    ap = cli.base_args(__doc__)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of each measured wrk run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--table", nargs="+", metavar="FILE", help="the table of recorded runs")
    args = cli.parse(ap, smoke={"rounds": 1, "duration": 1.0, "warmup": 0.0})
    if args.table:
        print(table(recorded(args.table, args.scenario)))
        return
    chosen = {n: SCENARIOS[n] for n in (args.scenario or SCENARIOS)}
    skipped = sorted({s for sc in chosen.values() for s in sc.servers if not PEERS[s].available()})
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}", file=sys.stderr)
    recs: list[dict[str, Any]] = []
    needs_db = any(sc.path == "/db" for sc in chosen.values())
    with pg.database_url() if needs_db else contextlib.nullcontext("") as db:
        for rd in range(args.rounds):
            for name, sc in chosen.items():
                servers = [s for s in sc.servers if s not in skipped]
                shift = rd % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    run = one_run(args, server, sc.path, db)
                    rec = {
                        "bench": "compare", "label": server, "scenario": name, "round": rd,
                        "path": sc.path, "workers": args.workers, "cmd": PEERS[server].cmd,
                        "wrk": f"-t{args.threads} -c{args.conns} -d{args.duration:g}s",
                        "run": run, "summary": {"rps": results.summary([run.get("rps")])},
                    }  # fmt: skip
                    cli.emit(args, rec)
                    recs.append(rec)
    print(table(recs))


if __name__ == "__main__":
    main()
