#!/usr/bin/env python3
"""How long a plain reader waits behind a migration that waits for its lock.

The issue 18 reproduction: a long transaction holds a table (a report:
``begin; select count(*) from t; select pg_sleep(HOLD)``); ``supervise
migrate`` runs ``alter table t add column x int``, which queues for its ACCESS
EXCLUSIVE lock; as soon as the migration's backend waits on the lock, a reader
sends ``select count(*) from t`` and its wait is measured. Each
``--table-lock-timeout`` is measured ``--reps`` times (0 is the behaviour
before the lock rule: no limit); the table also gives when the migration
applied, counted from the holder's start.

Uses $PERF_DB_URL or $SUPERVISE_TEST_DATABASE_URL, or a throwaway local cluster;
every run works in a database of its own, dropped afterwards.

    .venv/bin/python bench/lock_queue.py [--hold 6] [--reps 5] [--timeouts 0,0.1,0.25,0.5,1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from supervisor.testing.launch import SupervisorProcess, wait_until
from supervisor.testing.postgres import fresh_database

from harness import pg
from harness.results import append, default_path, record, summary

HERE = Path(__file__).resolve().parent


def _migrating(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where application_name like '%:migrate%' "
            "and wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def _holds(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_locks l join pg_stat_activity a using (pid) "
            "where a.application_name = 'report' and l.relation = 't'::regclass and l.granted"
        ).fetchone()
    return bool(row and row[0])


def trial(server: str, timeout: float, hold: float) -> tuple[float, float]:
    """(the reader's wait, when the migration ended counted from the holder's start), in s."""
    with fresh_database(server, "lockq") as url, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table t (id int); insert into t select generate_series(1, 1000)")
        (Path(tmp) / "0001_x.sql").write_text("alter table t add column x int;\n")
        holder = psycopg.connect(url, autocommit=True, application_name="report")
        held = threading.Thread(
            target=holder.execute, args=(f"begin; select count(*) from t; select pg_sleep({hold}); commit",)
        )
        started = time.monotonic()
        held.start()
        wait_until(lambda: _holds(url), 10, "the holder to hold t")
        run = SupervisorProcess(
            ["migrate", "--migrations", tmp, "--table-lock-timeout", str(timeout), "--log-format", "json"],
            HERE,
            {"DATABASE_URL": url},
        )
        try:
            wait_until(lambda: _migrating(url), 30, "the migration to wait for its lock")
            with psycopg.connect(url, autocommit=True) as reader:
                sent = time.monotonic()
                reader.execute("select count(*) from t")
                waited = time.monotonic() - sent
            assert run.wait(hold + 120) == 0, run.output()
            applied = time.monotonic() - started
        finally:
            run.finish()
            held.join()
            holder.close()
        return waited, applied


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hold", type=float, default=6.0, help="how long the holder's transaction runs (s)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--timeouts", default="0,0.1,0.25,0.5,1", help="--table-lock-timeout values (s)")
    ap.add_argument("--out", help="append the record here (default: results/lockq-<date>.jsonl)")
    ap.add_argument(
        "--smoke", action="store_true", help="a 2 s holder, one rep, nothing written unless --out"
    )
    args = ap.parse_args()
    if args.smoke:
        args.hold, args.reps = 2.0, 1
    timeouts = [float(t) for t in args.timeouts.split(",")]
    waits: dict[str, list[float]] = {}
    ends: dict[str, list[float]] = {}
    with pg.database_url() as server:
        for rep in range(args.reps):
            for timeout in timeouts:
                waited, applied = trial(server, timeout, args.hold)
                waits.setdefault(str(timeout), []).append(waited)
                ends.setdefault(str(timeout), []).append(applied)
                print(f"  rep {rep} timeout {timeout:g} s: reader {waited * 1000:.0f} ms", file=sys.stderr)
    print(f"\nholder {args.hold:g} s, {args.reps} reps\n")
    print("| --table-lock-timeout | reader's wait, median (max) | migration applied after (median) |")
    print("|---|---|---|")
    for timeout in timeouts:
        w, e = waits[str(timeout)], ends[str(timeout)]
        label = f"{timeout:g} s" + (" (no limit: before)" if timeout == 0 else "")
        reader = f"{statistics.median(w) * 1000:.0f} ms ({max(w) * 1000:.0f} ms)"
        print(f"| {label} | {reader} | {statistics.median(e):.1f} s |")
    rec = record(
        "lockq",
        "pg-supervise",
        hold_s=args.hold,
        results={"reader_wait_s": waits, "applied_after_s": ends},
        summary={t: summary(v) for t, v in waits.items()},
    )
    out = args.out or (None if args.smoke else default_path("lockq"))
    if out:
        append(out, rec)
        print(f"\nraw: {out}")


if __name__ == "__main__":
    main()
