#!/usr/bin/env python3
"""PostgreSQL-side benchmark for pg-supervise, side by side in one run.

1. units of work per second for N workers: each unit is `select 1`, either on a
   connection lent by the worker's own pool (`worker.db.connection()`) or on a
   new connection opened and closed for that unit (`psycopg.connect`);
2. worker start-up (fork -> ready, as the master logs it) with a pool of
   min_size 1, 4 and 10, and without a database, for reference.

Uses $PERF_DB_URL or $SUPERVISE_TEST_DATABASE_URL, or a throwaway local cluster (initdb), on
loopback only. Every run is bounded in time and stopped with SIGTERM.

    .venv/bin/python bench/db_bench.py [--workers 2] [--seconds 5] [--reps 3]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from pathlib import Path

from supervisor.testing.launch import SupervisorProcess

from harness import pg
from harness.results import append, default_path, record, summary

HERE = Path(__file__).resolve().parent


def run_units(url: str, target: str, workers: int, seconds: float) -> float:
    run = SupervisorProcess(
        [target, "-w", str(workers), "--pool-max-size", "2", "--log-format", "json"],
        HERE / "apps",
        {"DATABASE_URL": url, "PYTHONPATH": str(HERE / "apps")},
    )
    try:
        run.wait_ready(workers, timeout=30)
        started = time.monotonic()
        time.sleep(seconds)  # the load runs for a fixed time; nothing to poll
        run.signal(signal.SIGTERM)
        elapsed = time.monotonic() - started
        assert run.wait(30) == 0
        return sum(e["units"] for e in run.find("units")) / elapsed
    finally:
        run.finish()


def run_startup(url: str | None, min_size: int | None, workers: int) -> tuple[float, float]:
    args = ["idle_target:idle", "-w", str(workers), "--log-format", "json"]
    env = {"PYTHONPATH": str(HERE / "apps")}
    if url is not None and min_size is not None:
        args += ["--pool-min-size", str(min_size), "--pool-max-size", str(max(min_size, 4))]
        env["DATABASE_URL"] = url
    launched = time.monotonic()
    run = SupervisorProcess(args, HERE / "apps", env)
    try:
        ready = run.wait_event("worker ready", count=workers, timeout=60)
        boot = statistics.median(e["boot_s"] for e in ready)
        all_ready = max(e["_t"] for e in ready) - launched
        run.signal(signal.SIGTERM)
        run.wait(30)
        return boot, all_ready
    finally:
        run.finish()


def fmt(xs: list[float], scale: float = 1, dec: int = 1) -> str:
    return f"{statistics.median(xs) * scale:.{dec}f} ({min(xs) * scale:.{dec}f}-{max(xs) * scale:.{dec}f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", help="append the record here (default: results/db-<date>.jsonl)")
    ap.add_argument("--smoke", action="store_true", help="1 s, one rep, nothing written unless --out")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.reps = 1.0, 1
    with pg.database_url() as url:
        results: dict[str, list[float]] = {}
        for rep in range(args.reps):
            for name, target in (("pool", "db_target:pooled"), ("connect", "db_target:connect_each")):
                rate = run_units(url, target, args.workers, args.seconds)
                results.setdefault(f"units_{name}", []).append(rate)
                print(f"  rep {rep} {name:8} {rate:9.0f} units/s", file=sys.stderr)
            for label, size in (("none", None), ("1", 1), ("4", 4), ("10", 10)):
                boot, all_ready = run_startup(url if size else None, size, args.workers)
                results.setdefault(f"boot_{label}", []).append(boot)
                results.setdefault(f"ready_{label}", []).append(all_ready)
        print(f"\npg-supervise, {args.workers} workers, {args.reps} reps, median (min-max)\n")
        pool, conn = results["units_pool"], results["units_connect"]
        print("| unit of work (`select 1`) | units/s | vs connect per unit |\n|---|---|---|")
        print(
            f"| per-worker pool (`worker.db.connection()`) | {fmt(pool, dec=0)} | "
            f"{statistics.median(pool) / statistics.median(conn):.1f}x |"
        )
        print(f"| new connection per unit (`psycopg.connect`) | {fmt(conn, dec=0)} | 1.0x |")
        print("\n| pool min_size | worker fork -> ready (ms) | launch -> all ready (s) |\n|---|---|---|")
        for label in ("none", "1", "4", "10"):
            print(
                f"| {label if label != 'none' else 'no database'} | "
                f"{fmt(results[f'boot_{label}'], 1000)} | {fmt(results[f'ready_{label}'], 1, 3)} |"
            )
        rec = record(
            "db",
            "pg-supervise",
            workers=args.workers,
            seconds=args.seconds,
            results=results,
            summary={k: summary(v) for k, v in results.items()},
        )
        out = args.out or (None if args.smoke else default_path("db"))
        if out:
            append(out, rec)
            print(f"\nraw: {out}")


if __name__ == "__main__":
    main()
