#!/usr/bin/env python3
"""Past capacity: what each server answers in time when the load exceeds what
its database can serve, and how fast it recovers once the spike is over.

Every request runs one query of --query-ms in PostgreSQL (`/dbslow`), each
worker holding at most 4 connections. Capacity is measured first (on the
first server: clients that ask again as soon as they are answered). Then, for
each server and each multiple of that capacity: an open-loop spike (a new
connection per request, as from many clients, each giving up after
--timeout, as a load balancer does) for --spike s, then half the capacity
for --after s. Per spike: the share of capacity answered in time (goodput),
p50/p99 of those answers, how many were refused (503) or timed out; after
it, the time until every request is answered in time again.

    .venv/bin/python bench/overload.py                       # every server, 1.25x 2x 5x
    .venv/bin/python bench/overload.py --server pg-supervise-pool --multiple 2
    .venv/bin/python bench/overload.py --smoke               # short phases: it works
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from harness import openloop, pg, results
from harness.cli import Launch
from harness.openloop import Phase
from harness.peers import PEERS

# ours first (the ASGI path on our own pool, where capacity is measured), then the peers
SERVERS = (
    "pg-supervise-pool",
    "pg-supervise-wsgi-pool",
    "pg-supervise-granian-pool",
    "pg-supervise-granian-wsgi-pool",
    "uvicorn-std",
    "gunicorn-gthread",
    "granian-asgi",
    "granian-wsgi",
)
LABELS = {
    "pg-supervise-pool": "pg-supervise ASGI",
    "pg-supervise-wsgi-pool": "pg-supervise WSGI (4 threads)",
    "pg-supervise-granian-pool": "pg-supervise ASGI --http granian",
    "pg-supervise-granian-wsgi-pool": "pg-supervise WSGI --http granian",
    "uvicorn-std": "uvicorn + psycopg_pool",
    "gunicorn-gthread": "gunicorn gthread + psycopg_pool",
    "granian-asgi": "granian ASGI + psycopg_pool",
    "granian-wsgi": "granian WSGI + psycopg_pool",
}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", choices=SERVERS, help="default: all installed")
    ap.add_argument("--multiple", action="append", type=float, help="of capacity (default 1.25, 2, 5)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--query-ms", type=int, default=20)
    ap.add_argument("--spike", type=float, default=8.0, help="seconds of each spike")
    ap.add_argument("--after", type=float, default=5.0, help="seconds at half capacity after it")
    ap.add_argument("--timeout", type=float, default=1.0, help="when a client gives up")
    ap.add_argument("--capacity", type=float, help="requests/s instead of measuring it")
    ap.add_argument("--out", help="append JSON lines here (default: results/overload-<date>.jsonl)")
    ap.add_argument("--smoke", action="store_true", help="2 s phases, 2x only: the bench works")
    args = ap.parse_args()
    if args.smoke:
        args.spike, args.after, args.multiple = 2.0, 2.0, args.multiple or [2.0]
    args.multiple = args.multiple or [1.25, 2.0, 5.0]
    if max(args.spike, args.after) > 30:
        ap.error("every phase is bounded: --spike and --after at most 30 s")
    return args


def launch(name: str) -> Launch:
    peer = PEERS[name]
    return Launch(name, peer.cmd, dict(peer.env))


def main() -> int:
    args = parse()
    names = [n for n in (args.server or SERVERS) if PEERS[n].available()]
    path = f"/dbslow?ms={args.query_ms}"
    out = args.out or (None if args.smoke else results.default_path("overload"))
    rows: list[dict[str, Any]] = []
    with pg.database_url() as url:
        os.environ["PERF_DB_URL"] = url
        cap = args.capacity
        for name in names:
            srv, _ = launch(name).serve_ready(args.workers)
            try:
                if cap is None:
                    cap = openloop.capacity(srv.port, path)
                    print(f"capacity ({name}): {cap:.0f} req/s", file=sys.stderr, flush=True)
                for multiple in args.multiple:
                    phases = [Phase(multiple * cap, args.spike), Phase(0.5 * cap, args.after)]
                    run = openloop.drive(srv.port, path, phases, timeout=args.timeout)
                    rec = results.record(
                        "overload",
                        name,
                        capacity_rps=round(cap, 1),
                        multiple=multiple,
                        query_ms=args.query_ms,
                        timeout_s=args.timeout,
                        workers=args.workers,
                        spike=openloop.summary(run, 0, cap),
                        after=openloop.summary(run, 1, cap),
                        recovery_s=openloop.recovery(run, 1),
                        generator_lag_max_ms=round(run.max_lag * 1000, 1),
                    )
                    rows.append(rec)
                    if out:
                        results.append(out, rec)
                    spike = rec["spike"]
                    print(
                        f"{name} {multiple:g}x: {spike['goodput_share']:.0%} of capacity in time, "
                        f"p99 {spike['p99_ms']} ms, 503 {spike['refused_503']}, "
                        f"timed out {spike['timed_out']}, recovery {rec['recovery_s']} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(2.0)  # the backlog of the server, if any, is its own: let it drain
            finally:
                srv.stop()
    print(table(rows, args.multiple))
    return 0


def table(rows: list[dict[str, Any]], multiples: list[float]) -> str:
    """Markdown: per server and multiple, the share of capacity answered in
    time (p99 of those), and the recovery after the spike."""
    head = "| server | " + " | ".join(f"{m:g}x capacity" for m in multiples) + " |"
    lines = [head, "| --- |" + " --- |" * len(multiples)]
    by_server: dict[str, dict[float, dict[str, Any]]] = {}
    for rec in rows:
        by_server.setdefault(rec["label"], {})[rec["multiple"]] = rec
    for name, recs in by_server.items():
        cells = []
        for m in multiples:
            rec = recs.get(m)
            if rec is None:
                cells.append("-")
                continue
            s = rec["spike"]
            rec_s = rec["recovery_s"]
            back = "never" if rec_s is None else f"{rec_s:g} s"
            cells.append(f"{s['goodput_share']:.0%} (p99 {s['p99_ms']} ms), back in {back}")
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
