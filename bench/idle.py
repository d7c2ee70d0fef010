#!/usr/bin/env python3
"""Idle CPU and memory of the master and the workers, on the synthetic apps.

(bench/memory.py measures the memory of real apps, Django and FastAPI, after
varied traffic: issue 20. This is what memory.py measured before.)

Per trial: start (set PERF_HEAP_MB=200 to give the app a 200 MiB heap of
Python objects), wait until all N workers answer, settle --settle s, then
  * idle CPU over --window s from /proc/PID/stat (utime+stime) and context
    switches (wake-ups) per second, for the master and each worker
  * /proc/PID/smaps_rollup (Rss, Pss, USS=Private_Clean+Private_Dirty) for
    the master, each worker and any other descendant (e.g. a resource tracker)
  * the same memory figures again after --load-s of wrk -t2 -c16 on /
  * and again after a full gc.collect() in every worker (GET /gc until every
    worker pid has answered): the worst case for copy-on-write sharing of a
    preloaded heap, which a long-running worker reaches once its generation-2
    collection runs (unless the app called gc.freeze() before the fork)
Workers are identified by the pids they report in X-Worker-Pid.
"""

import os
import time

from harness import cli, load, procs, results
from harness.server import now

KEYS = ("Rss", "Pss", "USS", "Shared_Clean", "Shared_Dirty", "Private_Dirty", "Anonymous")


def mem(pid):
    s = procs.smaps_rollup(pid)
    return {k: s.get(k) for k in KEYS} if s else None


def short_cmd(pid):
    head, _, rest = procs.cmdline(pid).partition(" ")
    return (os.path.basename(head) + " " + rest)[:80]


def snapshot(srv, workers):
    others = sorted(srv.track() - set(workers))
    return {
        "master": mem(srv.pid),
        "workers": {str(p): mem(p) for p in sorted(workers)},
        "others": {str(p): dict(mem(p) or {}, cmd=short_cmd(p)) for p in others},
    }


def totals(snap):
    mems = (
        [snap["master"]]
        + list(snap["workers"].values())
        + [{k: v for k, v in o.items() if k != "cmd"} for o in snap["others"].values()]
    )
    mems = [p for p in mems if p]
    w = [p for p in snap["workers"].values() if p]
    return {
        "total_pss_mib": sum(p["Pss"] for p in mems) / 1024,
        "total_rss_mib": sum(p["Rss"] for p in mems) / 1024,
        "master_rss_mib": snap["master"]["Rss"] / 1024 if snap["master"] else None,
        "master_pss_mib": snap["master"]["Pss"] / 1024 if snap["master"] else None,
        "worker_rss_mib": results.med([p["Rss"] for p in w]) / 1024 if w else None,
        "worker_pss_mib": results.med([p["Pss"] for p in w]) / 1024 if w else None,
        "worker_uss_mib": results.med([p["USS"] for p in w]) / 1024 if w else None,
        "others_pss_mib": sum((o.get("Pss") or 0) for o in snap["others"].values()) / 1024,
    }


def main():
    ap = cli.base_args(__doc__)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--load-s", type=int, default=5)
    ap.add_argument("--no-gc", action="store_true", help="skip the full-GC phase")
    args = cli.parse(ap, smoke={"settle": 0.2, "window": 1.0, "load_s": 1})
    cfg = cli.resolve(args)
    n = args.workers
    trials = []
    for rep in range(args.reps):
        srv = cfg.server(n, cli.logpath(args, cfg, f"memory-n{n}-{rep}"))
        srv.start()
        try:
            _, t_ready, workers = load.probe_ready(srv.port, n, timeout=120)
            if t_ready is None:
                raise SystemExit(f"{cfg.label}: workers never became ready")
            time.sleep(args.settle)
            watched = [srv.pid, *sorted(workers)]
            c0 = {p: procs.proc_stat(p)["ticks"] for p in watched}
            x0 = {p: procs.ctx_all(p)[0] for p in watched}
            t0 = now()
            time.sleep(args.window)
            dt = now() - t0
            c1 = {p: procs.proc_stat(p)["ticks"] for p in watched}
            x1 = {p: procs.ctx_all(p)[0] for p in watched}
            cpu = {p: 100.0 * (c1[p] - c0[p]) / procs.CLK_TCK / dt for p in watched}
            wake = {p: (x1[p] - x0[p]) / dt for p in watched}
            idle_snap = snapshot(srv, workers)
            loaded = None
            if args.load_s:
                load.run_wrk(srv.port, "/", 2, 16, args.load_s)
                time.sleep(1.0)
                loaded = snapshot(srv, workers)
            gcd = None
            if not args.no_gc:
                ld = load.Load(srv.port, threads=n + 1, path="/gc").start()
                ld.wait_pids(n, 120)
                ld.stop()
                time.sleep(0.5)
                gcd = snapshot(srv, workers)
            trials.append(
                {
                    "master_cpu_pct": cpu[srv.pid],
                    "master_wakeups_per_s": wake[srv.pid],
                    "worker_cpu_pct": results.med([cpu[p] for p in workers]),
                    "worker_wakeups_per_s": results.med([wake[p] for p in workers]),
                    "idle": idle_snap,
                    "idle_totals": totals(idle_snap),
                    "after_load": loaded,
                    "after_load_totals": totals(loaded) if loaded else None,
                    "after_gc": gcd,
                    "after_gc_totals": totals(gcd) if gcd else None,
                }
            )
        finally:
            srv.stop(cli.sig(cfg.term_signal))
        time.sleep(0.3)
    summ = {
        k: results.summary([t[k] for t in trials])
        for k in ("master_cpu_pct", "master_wakeups_per_s", "worker_cpu_pct", "worker_wakeups_per_s")
    }
    for phase in ("idle_totals", "after_load_totals", "after_gc_totals"):
        if trials[0].get(phase):
            for k in trials[0][phase]:
                summ[f"{phase}.{k}"] = results.summary([t[phase][k] for t in trials])
    cli.emit(
        args,
        {
            "bench": "idle",
            "label": cfg.label,
            "workers": n,
            "env": cfg.env,
            "cmd": cfg.cmd,
            "window_s": args.window,
            "trials": trials,
            "summary": summ,
        },
    )


if __name__ == "__main__":
    main()
