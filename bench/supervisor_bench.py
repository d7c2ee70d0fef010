#!/usr/bin/env python3
"""pg-supervise against gunicorn, side by side, in one run (stdlib only).

For each worker count N and preload mode, every trial launches one server,
then measures, in this order:

1. startup      launch of the command -> the N-th distinct worker's ready marker
2. idle window  (first --idle-reps trials of each configuration) master
                context switches and CPU time over --idle-window seconds
3. replacement  SIGKILL of one worker -> ready marker from a pid not seen before
4. idle stop    SIGTERM to the master -> master reaped and no descendant left

Readiness is the same for both servers: a hook prints
``BENCH-READY pid=<pid> t=<time.time()>`` to stderr (pg-supervise: the
``worker_ready`` hook in apps/bench_hooks.py; gunicorn: ``post_worker_init`` in
apps/bench_gunicorn_conf.py). A reader thread stamps every stderr line with
time.monotonic() on arrival; times are arrival times relative to the launch.

Servers run on 127.0.0.1 only, each in its own session, cwd apps/. Every wait
is bounded; a metric that never happens is recorded as None. After each trial
the master and every process it spawned (same session, or a descendant seen
earlier with a matching start time) is SIGKILLed if still alive.

Run:  .venv/bin/python bench/supervisor_bench.py [--quick] [--reps R] [-N 2 -N 4]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time

from harness.environment import freeze_source, leftover_check, preflight, versions
from harness.lifecycle_tables import anomaly_report, fmt_num, make_table
from harness.lifecycle_trial import SERVERS, run_trial
from harness.procs import loadavg
from harness.provenance import ROOT, git, source_fingerprint
from harness.results import RESULTS, record
from harness.server import now


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "-N", "--workers", type=int, action="append", help="worker count (repeatable; default 2 and 4)"
    )
    ap.add_argument("--reps", type=int, default=5, help="trials per server and configuration (default 5)")
    ap.add_argument("--preload", choices=("both", "yes", "no"), default="both")
    ap.add_argument(
        "--idle-window", type=float, default=10.0, help="seconds of idle measurement (default 10)"
    )
    ap.add_argument(
        "--idle-reps",
        type=int,
        default=3,
        help="how many of the trials of each configuration include the idle window (default 3)",
    )
    ap.add_argument(
        "--import-delay", type=float, default=0.0, help="seconds bench_target takes to import (default 0)"
    )
    ap.add_argument(
        "--import-mode",
        choices=("sleep", "cpu"),
        default="sleep",
        help="how the import delay is spent (default sleep)",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="pause after readiness and after the replacement (default 0.5 s)",
    )
    ap.add_argument("--startup-timeout", type=float, default=20.0)
    ap.add_argument("--replace-timeout", type=float, default=10.0)
    ap.add_argument("--stop-timeout", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="reps 2, N=2 only")
    ap.add_argument(
        "--smoke", action="store_true", help="one short trial, N=2, no preload, results in a temp dir"
    )
    ap.add_argument(
        "--source",
        choices=("worktree", "head", "live"),
        default="worktree",
        help="which supervisor/ code pg-supervise runs: 'worktree' (default) a copy of "
        "the working tree taken at start, 'head' a copy of git HEAD, 'live' the editable "
        "install as it is on disk at each launch (changes mid-run are then measured)",
    )
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv"))
    ap.add_argument("--out-dir", default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.reps = 2
        args.workers = [2]
    if args.smoke:
        args.reps, args.workers, args.preload = 1, [2], "no"
        args.idle_window, args.idle_reps, args.settle = 1.0, 1, 0.2
        if args.out_dir == RESULTS:
            args.out_dir = tempfile.mkdtemp(prefix="supervisor-bench-smoke-")
    ns = args.workers or [2, 4]
    modes = {"both": [False, True], "yes": [True], "no": [False]}[args.preload]

    os.makedirs(args.out_dir, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    jsonl = os.path.join(args.out_dir, f"{stamp}.jsonl")
    logpath = os.path.join(args.out_dir, f"{stamp}.log")
    mdpath = os.path.join(args.out_dir, f"{stamp}.md")
    ctl_dir = f"/tmp/supervisor-bench-{os.getpid()}"
    os.makedirs(ctl_dir, exist_ok=True)
    try:
        return _run(args, ns, modes, stamp, jsonl, logpath, mdpath, ctl_dir)
    finally:
        shutil.rmtree(ctl_dir, ignore_errors=True)


def _write(out, rec):
    """One record in the harness's results format (bench "supervisor")."""
    out.write(json.dumps(record("supervisor", rec.get("server") or rec["record"], **rec)) + "\n")
    out.flush()


def _run(args, ns, modes, stamp, jsonl, logpath, mdpath, ctl_dir):
    imported_from = freeze_source(args, ctl_dir)
    preflight(args, ctl_dir)
    fp0 = source_fingerprint(args.src_dir)
    meta = {
        "record": "meta",
        "started": stamp,
        "argv": sys.argv,
        "workers": ns,
        "preload_modes": modes,
        "reps": args.reps,
        "idle_reps": args.idle_reps,
        "idle_window_s": args.idle_window,
        "settle_s": args.settle,
        "import_delay_s": args.import_delay,
        "import_mode": args.import_mode,
        "versions": versions(args),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
        "git_head": git("rev-parse", "--short", "HEAD"),
        "git_dirty_supervisor": bool(git("status", "--porcelain", "supervisor")),
        "git_diff_stat_supervisor": git("diff", "--stat", "HEAD", "--", "supervisor"),
        "source": args.source,
        "supervisor_imported_from": imported_from,
        "supervisor_source_sha": fp0,
    }
    n_trials = args.reps * len(ns) * len(modes) * len(SERVERS)
    print(
        f"supervisor_bench: {n_trials} trials, N={ns}, preload={modes}, reps={args.reps}, "
        f"idle {args.idle_window:g} s x {min(args.idle_reps, args.reps)} per config, "
        f"import delay {args.import_delay:g} s ({args.import_mode})",
        file=sys.stderr,
    )
    print(f"  versions: {meta['versions']}; results -> {jsonl}", file=sys.stderr)

    trials, masters = [], []
    t_start = now()
    with open(jsonl, "w") as out, open(logpath, "w") as logf:
        _write(out, meta)
        out.flush()
        try:
            for rep in range(args.reps):
                for n in ns:
                    for preload in modes:
                        order = SERVERS if rep % 2 == 0 else SERVERS[::-1]
                        for kind in order:
                            rec, srv = run_trial(
                                args, kind, n, preload, rep, rep < args.idle_reps, ctl_dir, logf
                            )
                            if srv.proc is not None:
                                masters.append(srv.pid)
                            trials.append(rec)
                            _write(out, rec)
                            out.flush()
                            r = rec
                            print(
                                f"  [{len(trials):2d}/{n_trials}] {kind:12s} N={n} "
                                f"{'preload   ' if preload else 'no-preload'} rep={rep} "
                                f"start={fmt_num(r['startup_s'], 3)}s "
                                f"repl={fmt_num(r['replacement_s'], 4, 1000)}ms "
                                f"stop={fmt_num(r['stop_all_gone_s'], 3)}s"
                                + (
                                    f" wake/s={fmt_num(r['master_wakeups_per_s'], 2)}"
                                    f" cpu={fmt_num(r['master_cpu_ms'], 0)}ms"
                                    if r["idle_window_s"]
                                    else ""
                                )
                                + (f"  PROBLEMS: {r['problems']}" if r["problems"] else ""),
                                file=sys.stderr,
                                flush=True,
                            )
                            time.sleep(0.2)
        except KeyboardInterrupt:
            print("interrupted; reporting what was measured", file=sys.stderr)
        finally:
            fp1 = source_fingerprint(args.src_dir)
            left = leftover_check(masters)
            table, summaries = make_table(trials, ns, modes, args.idle_window)
            anomalies = anomaly_report(trials)
            for (key, server, n, preload), s in sorted(summaries.items(), key=str):
                _write(
                    out,
                    {
                        "record": "summary",
                        "metric": key,
                        "server": server,
                        "workers": n,
                        "preload": preload,
                        **s,
                    },
                )
            end = {
                "record": "end",
                "elapsed_s": now() - t_start,
                "leftover_processes": left,
                "supervisor_source_sha_end": fp1,
                "source_changed_during_run": fp1 != fp0,
                "loadavg_end": loadavg(),
            }
            _write(out, end)

    modified = meta["git_dirty_supervisor"] and args.source != "head"
    dirty = ", supervisor/ modified" if modified else ""
    header = (
        f"pg-supervise vs gunicorn sync — N={ns}, reps={args.reps} "
        f"(idle window {args.idle_window:g} s in {min(args.idle_reps, args.reps)} of them), "
        f"import delay {args.import_delay:g} s ({args.import_mode}); "
        f"median (min–max). {meta['versions'].get('pg-supervise')}, "
        f"{meta['versions'].get('gunicorn')}; pg-supervise code: "
        + {
            "worktree": "copy of the working tree at start",
            "head": "copy of git HEAD",
            "live": "editable install as on disk",
        }[args.source]
        + f" (git {meta['git_head']}{dirty}"
        f", sha {fp0})."
    )
    problems = [(t["server"], t["workers"], t["preload"], t["rep"], p) for t in trials for p in t["problems"]]
    report = [
        header,
        "",
        table,
        "",
        "Log lines at warning/error level (or unparsable), by phase:",
        "",
        anomalies,
        "",
    ]
    if problems:
        report += (
            ["Problems:", ""]
            + [f"* {s} N={n} preload={p} rep={r}: {msg}" for s, n, p, r, msg in problems]
            + [""]
        )
    shas = sorted({t["supervisor_source_sha"] for t in trials if t["server"] == "pg-supervise"} | {fp1})
    if len(shas) > 1:
        report.append(
            f"WARNING: supervisor/ sources changed during the run ({len(shas)} versions seen: "
            f"{', '.join(shas)}; per-trial 'supervisor_source_sha' in the JSON lines), "
            "so pg-supervise trials may mix versions."
        )
    report.append(
        f"Leftover processes after the run: {left if left else 'none'} "
        f"(ps, {len(set(masters))} sessions checked). Elapsed {end['elapsed_s']:.0f} s."
    )
    report.append(f"Raw: {jsonl} ; logs: {logpath}")
    text = "\n".join(report)
    with open(mdpath, "w") as f:
        f.write(text + "\n")
    print(text)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
