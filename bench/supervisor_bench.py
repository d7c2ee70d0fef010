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
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from harness.peers import PEERS, fill
from harness.procs import (
    CLK_TCK,
    alive,
    children,
    ctx_all,
    ctx_main,
    free_port,
    loadavg,
    proc_stat,
    sched_ns,
    session_members,
)
from harness.results import record, summary
from harness.server import READY_MARKER, Server, now

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = os.path.join(HERE, "apps")
RESULTS = os.path.join(HERE, "results")
SERVERS = ("pg-supervise", "gunicorn")


# --------------------------------------------------------------------------- log classification


def classify(kind, text):
    """(level, short event) for a log line, or None for ordinary lines."""
    if READY_MARKER.fullmatch(text.strip()):
        return None
    if kind == "pg-supervise":
        try:
            obj = json.loads(text)
        except ValueError:
            return ("non-json", text[:160])
        if not isinstance(obj, dict):
            return ("non-json", text[:160])
        level = str(obj.get("level", "?"))
        if level in ("warning", "error", "critical", "exception"):
            extra = {
                k: v
                for k, v in obj.items()
                if k
                not in (
                    "event",
                    "level",
                    "timestamp",
                    "pid",
                    "worker_pid",
                    "role",
                    "worker_id",
                    "worker",
                    "replacing_pid",
                )
            }
            return (level, f"{obj.get('event')} {json.dumps(extra, sort_keys=True)}"[:200])
        return None
    m = re.search(r"\[(WARNING|ERROR|CRITICAL)\]\s*(.*)", text)
    if m:
        msg = re.sub(r"\d{3,}", "<n>", m.group(2))
        return (m.group(1).lower(), msg[:200])
    if not text.startswith("[") and text.strip():
        return ("unformatted", text[:160])
    return None


# --------------------------------------------------------------------------- one trial


# the launch table's entries for the two servers compared here
TABLE_ENTRY = {"pg-supervise": "pg-supervise-main", "gunicorn": "gunicorn-sync-main"}


def build_command(args, kind, n, preload, ctl_dir):
    argv = shlex.split(fill(PEERS[TABLE_ENTRY[kind]].cmd, port=free_port(), workers=n))
    argv[0] = os.path.join(args.venv, "bin", argv[0])
    if preload:
        argv.insert(-1, "--preload")
    if kind == "gunicorn":
        # gunicorn 27 opens a control socket by default at ~/.gunicorn/gunicorn.ctl;
        # a private path keeps it (and its master thread) without clashing with
        # any other gunicorn on the machine.
        argv[-1:-1] = ["--control-socket", os.path.join(ctl_dir, "gunicorn.ctl")]
    return argv


def server_env(args, kind="pg-supervise"):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SUPERVISE_") and k not in ("GUNICORN_CMD_ARGS", "PYTHONPATH")
    }
    env["PYTHONPATH"] = APPS
    if kind == "pg-supervise" and args.src_dir:
        # the frozen copy of supervisor/ comes before the editable install
        env["PYTHONPATH"] += os.pathsep + os.path.dirname(args.src_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["BENCH_IMPORT_DELAY"] = str(args.import_delay)
    env["BENCH_IMPORT_MODE"] = args.import_mode
    return env


def run_trial(args, kind, n, preload, rep, do_idle, ctl_dir, logf):
    label = f"{kind} N={n} {'preload' if preload else 'no-preload'} rep={rep}"
    argv = build_command(args, kind, n, preload, ctl_dir)
    srv = Server(argv, cwd=APPS, env=server_env(args, kind), label=label)
    rec = {
        "record": "trial",
        "server": kind,
        "workers": n,
        "preload": preload,
        "rep": rep,
        "import_delay_s": args.import_delay,
        "import_mode": args.import_mode,
        "cmd": " ".join(argv),
        "startup_s": None,
        "startup_hook_s": None,
        "ready_times_s": None,
        "master_wakeups_per_s": None,
        "master_wakeups_all_threads_per_s": None,
        "master_threads": None,
        "master_cpu_ms": None,
        "master_cpu_sched_ms": None,
        "worker_wakeups_per_s": None,
        "idle_window_s": None,
        "idle_log_lines": None,
        "replacement_s": None,
        "victim_reaped_s": None,
        "new_process_s": None,
        "stop_master_exit_s": None,
        "stop_all_gone_s": None,
        "exit_code": None,
        "problems": [],
        "supervisor_source_sha": source_fingerprint(args.src_dir),
        "loadavg": loadavg(),
    }
    t_phase = {}
    try:
        srv.start()
        # 1. startup ---------------------------------------------------------------
        startup_timeout = args.startup_timeout + args.import_delay * (n + 1)
        ready = srv.wait_ready(n, startup_timeout)
        if ready is None:
            rec["problems"].append(
                f"not {n} ready markers within {startup_timeout:.0f} s "
                f"(got {len(srv.marker_pids())}; master exit code {srv.returncode})"
            )
            return rec, srv
        rec["startup_s"] = ready[-1][0]
        rec["ready_times_s"] = [round(t, 4) for t, _, _ in ready]
        hook_ts = [ht for _, _, ht in ready]
        rec["startup_hook_s"] = max(hook_ts) if all(h is not None for h in hook_ts) else None
        t_phase["ready"] = rec["startup_s"]
        srv.track()
        kids = children(srv.pid)
        ready_pids = [pid for _, pid, _ in ready]
        strangers = [p for p in ready_pids if p not in kids]
        if strangers:
            rec["problems"].append(f"ready pids not children of the master: {strangers}")
        time.sleep(args.settle)

        # 2. idle window ----------------------------------------------------------
        if do_idle:
            workers = sorted(p for p in children(srv.pid) if p in set(ready_pids))
            m0, (a0, nthr) = ctx_main(srv.pid), ctx_all(srv.pid)
            c0, s0 = proc_stat(srv.pid), sched_ns(srv.pid)
            w0 = {p: ctx_all(p)[0] for p in workers}
            lines0 = len(srv.lines)
            t0 = now()
            time.sleep(args.idle_window)
            dt = now() - t0
            m1, (a1, _), c1, s1 = ctx_main(srv.pid), ctx_all(srv.pid), proc_stat(srv.pid), sched_ns(srv.pid)
            w1 = {p: ctx_all(p)[0] for p in workers}
            if None in (m0, m1, a0, a1, c0, c1):
                rec["problems"].append("master vanished during the idle window")
            else:
                rec["idle_window_s"] = dt
                rec["master_threads"] = nthr
                rec["master_wakeups_per_s"] = (m1 - m0) / dt
                rec["master_wakeups_all_threads_per_s"] = (a1 - a0) / dt
                rec["master_cpu_ms"] = (c1["ticks"] - c0["ticks"]) * 1000.0 / CLK_TCK
                if s0 is not None and s1 is not None:
                    rec["master_cpu_sched_ms"] = (s1 - s0) / 1e6
                per = [
                    (w1[p] - w0[p]) / dt for p in workers if w0.get(p) is not None and w1.get(p) is not None
                ]
                rec["worker_wakeups_per_s"] = statistics.median(per) if per else None
                rec["idle_log_lines"] = len(srv.lines) - lines0

        # 3. replacement ------------------------------------------------------------
        kids = children(srv.pid)
        victims = [pid for pid in ready_pids if pid in kids]
        if not victims:
            rec["problems"].append("no ready worker left to kill")
        else:
            srv.track()
            victim = victims[0]
            vstart = srv.known.get(victim)
            seen = srv.marker_pids()
            watch = {}
            stop_watch = threading.Event()

            def watcher():
                while not stop_watch.is_set():
                    t = now()
                    if "reaped" not in watch and not os.path.exists(f"/proc/{victim}"):
                        watch["reaped"] = t
                    if "new" not in watch and children(srv.pid) - kids:
                        watch["new"] = t
                    if "reaped" in watch and "new" in watch:
                        return
                    time.sleep(0.002)

            t_kill = now()
            t_phase["kill"] = t_kill - srv.t0
            if vstart is not None and alive(victim, vstart):
                os.kill(victim, signal.SIGKILL)
            else:
                rec["problems"].append(f"worker {victim} was gone before the kill")
            wt = threading.Thread(target=watcher, daemon=True)
            wt.start()
            rep_timeout = args.replace_timeout + args.import_delay
            new = srv.wait_ready(1, rep_timeout, exclude=seen, after=t_kill - srv.t0)
            stop_watch.set()
            wt.join(timeout=2)
            if new is None:
                rec["problems"].append(f"no replacement ready within {rep_timeout:.0f} s")
            else:
                rec["replacement_s"] = new[0][0] - (t_kill - srv.t0)
            if "reaped" in watch:
                rec["victim_reaped_s"] = watch["reaped"] - t_kill
            if "new" in watch:
                rec["new_process_s"] = watch["new"] - t_kill
            srv.track()
            time.sleep(args.settle)

        # 4. idle graceful stop ----------------------------------------------------
        srv.track()
        if srv.exit_t is not None:
            rec["problems"].append(f"master exited early with code {srv.returncode}")
            return rec, srv
        known = dict(srv.known)
        t_term = now()
        t_phase["term"] = t_term - srv.t0
        os.kill(srv.pid, signal.SIGTERM)
        t_exit = srv.wait_exit(args.stop_timeout)
        if t_exit is None:
            rec["problems"].append(f"master still running {args.stop_timeout:.0f} s after SIGTERM")
            return rec, srv
        rec["stop_master_exit_s"] = t_exit - t_term
        rec["exit_code"] = srv.returncode
        deadline = t_term + args.stop_timeout
        while now() < deadline:
            t_check = now()
            if not any(alive(p, s) for p, s in known.items()) and not session_members(srv.pid):
                rec["stop_all_gone_s"] = max(t_check, t_exit) - t_term
                break
            time.sleep(0.001)
        else:
            rec["problems"].append("descendants still alive after the master exited")
        if srv.returncode != 0:
            rec["problems"].append(f"master exit code {srv.returncode} after SIGTERM")
        return rec, srv
    finally:
        killed = srv.cleanup()
        if killed:
            rec["problems"].append(f"cleanup had to SIGKILL {killed}")
        # per-phase log anomalies
        anomalies = []
        for t, _stream, text in srv.lines:
            c = classify(kind, text)
            if c:
                phase = (
                    "startup"
                    if t < t_phase.get("ready", 1e18)
                    else "idle"
                    if t < t_phase.get("kill", 1e18)
                    else "replacement"
                    if t < t_phase.get("term", 1e18)
                    else "stop"
                )
                anomalies.append({"phase": phase, "level": c[0], "event": c[1], "t": round(t, 4)})
        rec["log_anomalies"] = anomalies
        rec["log_lines"] = len(srv.lines)
        logf.write(f"===== {label}\n$ {' '.join(argv)}\n")
        for t, stream, text in srv.lines:
            logf.write(f"{t:9.4f} {stream} {text}\n")
        logf.write(f"----- exit code {srv.returncode}; problems: {rec['problems']}\n\n")
        logf.flush()


# --------------------------------------------------------------------------- report

METRICS = [
    # key, title, scale, decimals
    ("startup_s", "startup: launch → N workers ready (s)", 1, 3),
    ("replacement_s", "replacement: kill -9 → new worker ready (ms)", 1000, 1),
    ("victim_reaped_s", "  · kill -9 → killed worker reaped (ms)", 1000, 1),
    ("new_process_s", "  · kill -9 → new child process seen (ms)", 1000, 1),
    ("stop_all_gone_s", "idle stop: TERM → master reaped, no descendant (s)", 1, 3),
    ("stop_master_exit_s", "  · TERM → master reaped (s)", 1, 3),
    ("master_wakeups_per_s", "master wake-ups/s (/proc/pid/status)", 1, 2),
    ("master_wakeups_all_threads_per_s", "  · master wake-ups/s, all threads", 1, 2),
    ("master_cpu_ms", "master CPU in idle window (ms, utime+stime)", 1, 0),
    ("master_cpu_sched_ms", "  · same from schedstat (ms, ns resolution)", 1, 2),
    ("worker_wakeups_per_s", "worker wake-ups/s (median of workers)", 1, 2),
]


def fmt_cell(s, scale, dec):
    if not s or s["n"] == 0:
        return "–"
    med = s["median"] * scale
    lo, hi = s["min"] * scale, s["max"] * scale
    out = f"{med:.{dec}f}"
    if f"{lo:.{dec}f}" != f"{hi:.{dec}f}":
        out += f" ({lo:.{dec}f}–{hi:.{dec}f})"
    return out


def ratio(a, b):
    if not a or not b or a["n"] == 0 or b["n"] == 0 or a["median"] is None or b["median"] is None:
        return "–"
    if b["median"] == 0:
        return "– (both 0)" if a["median"] == 0 else "– (gunicorn 0)"
    return f"{a['median'] / b['median']:.2f}×"


def make_table(trials, ns, modes, window):
    groups = {}
    for t in trials:
        groups.setdefault((t["server"], t["workers"], t["preload"]), []).append(t)
    lines = [
        "| metric | N | preload | pg-supervise | gunicorn | ours / gunicorn |",
        "|---|---|---|---|---|---|",
    ]
    summaries = {}
    for key, title, scale, dec in METRICS:
        for n in ns:
            for preload in modes:
                cells = {}
                for server in SERVERS:
                    ts = groups.get((server, n, preload), [])
                    vals = [t[key] for t in ts]
                    s = summary(vals)
                    s["of"] = sum(1 for t in ts if key not in IDLE_KEYS or t.get("idle_window_s"))
                    cells[server] = s
                    summaries[(key, server, n, preload)] = s
                ours, gun = cells["pg-supervise"], cells["gunicorn"]

                def cell(s, scale=scale, dec=dec):
                    txt = fmt_cell(s, scale, dec)
                    if s["n"] < s["of"]:
                        txt += f" [{s['n']}/{s['of']} ok]"
                    return txt

                lines.append(
                    f"| {title} | {n} | {'yes' if preload else 'no'} | {cell(ours)} | "
                    f"{cell(gun)} | {ratio(ours, gun)} |"
                )
    return "\n".join(lines), summaries


IDLE_KEYS = {
    "master_wakeups_per_s",
    "master_wakeups_all_threads_per_s",
    "master_cpu_ms",
    "master_cpu_sched_ms",
    "worker_wakeups_per_s",
}


def anomaly_report(trials):
    counts = {}
    for t in trials:
        for a in t.get("log_anomalies", []):
            k = (t["server"], a["phase"], a["level"], a["event"])
            counts[k] = counts.get(k, 0) + 1
    if not counts:
        return "No warning/error/unformatted log lines."
    out = ["| server | phase | level | line (numbers elided for gunicorn) | count |", "|---|---|---|---|---|"]
    for (server, phase, level, event), c in sorted(counts.items()):
        out.append(f"| {server} | {phase} | {level} | `{event.replace('|', '/')}` | {c} |")
    return "\n".join(out)


# --------------------------------------------------------------------------- run


def source_fingerprint(base=None):
    h = hashlib.sha256()
    base = base or os.path.join(ROOT, "supervisor")
    for dirpath, dirnames, filenames in sorted(os.walk(base)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                p = os.path.join(dirpath, name)
                h.update(p[len(base) :].encode())
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:16]


def git(*a):
    try:
        return subprocess.run(
            ["git", "-C", ROOT, *a], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def leftover_check(master_pids):
    """ps-level check that nothing we started survives."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True).stdout
    left = []
    sids = set(master_pids)
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        pid, sid, cmd = int(parts[0]), int(parts[1]), parts[2]
        if pid == os.getpid():
            continue
        if sid in sids or "bench_target" in cmd or "bench_gunicorn_conf" in cmd:
            left.append(line.strip())
    return left


def versions(args):
    bindir = os.path.join(args.venv, "bin")
    out = {}
    for name, argv in (
        ("pg-supervise", [os.path.join(bindir, "supervise"), "--version"]),
        ("gunicorn", [os.path.join(bindir, "gunicorn"), "--version"]),
    ):
        try:
            out[name] = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, cwd=APPS, env=server_env(args, name)
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            out[name] = f"? ({exc})"
    return out


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


def freeze_source(args, ctl_dir):
    """Copy supervisor/ so that edits during the run do not mix versions."""
    args.src_dir = None
    if args.source == "live":
        return None
    src_root = os.path.join(ctl_dir, "src")
    os.makedirs(src_root, exist_ok=True)
    if args.source == "worktree":
        shutil.copytree(
            os.path.join(ROOT, "supervisor"),
            os.path.join(src_root, "supervisor"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    else:
        arch = subprocess.run(
            ["git", "-C", ROOT, "archive", "HEAD", "supervisor"], capture_output=True, timeout=60, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", src_root], input=arch, check=True, timeout=60)
    args.src_dir = os.path.join(src_root, "supervisor")
    probe = subprocess.run(
        [os.path.join(args.venv, "bin", "python"), "-c", "import supervisor; print(supervisor.__file__)"],
        env=server_env(args),
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    where = probe.stdout.strip()
    if not where.startswith(args.src_dir):
        sys.exit(
            f"supervisor_bench: the frozen copy is not the one imported ({where!r}, "
            f"{probe.stderr.strip()[-300:]!r}); try --source live"
        )
    return where


def preflight(args, ctl_dir):
    """One N=1 launch of each server: fail fast, with its log, if it cannot start."""
    for kind in SERVERS:
        argv = build_command(args, kind, 1, False, ctl_dir)
        srv = Server(argv, cwd=APPS, env=server_env(args, kind), label=f"preflight {kind}")
        try:
            srv.start()
            ok = srv.wait_ready(1, args.startup_timeout + args.import_delay) is not None
            if ok:
                os.kill(srv.pid, signal.SIGTERM)
                srv.wait_exit(args.stop_timeout)
        finally:
            srv.cleanup()
        if not ok:
            log = "\n".join(f"  {t:8.4f} {text[:400]}" for t, _, text in srv.lines[-30:])
            sys.exit(
                f"supervisor_bench: preflight: {kind} did not get one worker ready "
                f"(exit code {srv.returncode}).\n$ {' '.join(argv)}\n{log}"
            )


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
                                f"start={_f(r['startup_s'], 3)}s repl={_f(r['replacement_s'], 4, 1000)}ms "
                                f"stop={_f(r['stop_all_gone_s'], 3)}s"
                                + (
                                    f" wake/s={_f(r['master_wakeups_per_s'], 2)}"
                                    f" cpu={_f(r['master_cpu_ms'], 0)}ms"
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


def _f(x, dec, scale=1):
    return "–" if x is None else f"{x * scale:.{dec}f}"


if __name__ == "__main__":
    sys.exit(main())
