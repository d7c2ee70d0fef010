"""One lifecycle trial of ``supervisor_bench.py``: launch one server (pg-supervise
or gunicorn sync, from the launch table), then measure start-up, an idle window,
the replacement of a SIGKILLed worker and an idle graceful stop; classify the
server's log lines (warnings, errors, unparsable lines) by phase."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import statistics
import threading
import time

from harness.peers import APPS, PEERS, fill
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
from harness.provenance import source_fingerprint
from harness.server import READY_MARKER, Server, now

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
