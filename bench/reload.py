#!/usr/bin/env python3
"""Graceful reload under wrk load.

Per trial: start, wait until all N workers answer, run
`wrk -t2 -c64 -d{duration}s --latency /`, send the reload signal (peer's
reload_signal, default SIGHUP) to the master --at seconds into the run, and
record
  * old_gone_s:    signal -> every pre-reload worker pid has exited (/proc poll, 5 ms)
  * new_ready_s:   signal -> N post-signal 'PERFAPP imported'/'lifespan-ready'
                   events from new pids (app log; None when the app is preloaded)
  * wrk: requests, non-2xx, socket errors (connect/read/write/timeout), max latency
  * serving_after: after wrk ends, N distinct new pids answer (True/False)
A control run without the signal (same duration) is made once per invocation
so requests lost to the reload can be estimated.
"""

import subprocess
import time

from harness import cli, load, procs, results
from harness.server import now


def one(args, cfg, n, rep, do_reload):
    srv, pids0 = cfg.serve_ready(n, cli.logpath(args, cfg, f"reload-n{n}-{rep}-{int(do_reload)}"))
    time.sleep(0.5)
    wrk = subprocess.Popen(
        load.wrk_cmd(srv.port, "/", 2, 64, args.duration),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rec = {}
    t_sig = None
    if do_reload:
        time.sleep(args.at)
        t_sig = now()
        srv.send_signal(cli.sig(cfg.reload_signal))
        t_gone = None
        while now() - t_sig < args.duration + 20:
            if not any(procs.alive(p) for p in pids0):
                t_gone = now()
                break
            time.sleep(0.005)
        rec["old_gone_s"] = (t_gone - t_sig) if t_gone else None
    out, _ = wrk.communicate(timeout=args.duration + 60)
    w = load.parse_wrk(out)
    rec.update(
        {
            k: w.get(k)
            for k in (
                "requests",
                "rps",
                "non2xx",
                "sock_connect",
                "sock_read",
                "sock_write",
                "sock_timeout",
                "socket_errors",
                "lat_p50_ms",
                "lat_p99_ms",
                "lat_max_ms",
            )
        }
    )
    if do_reload:
        _, t_new, pids1 = load.probe_ready(srv.port, n, timeout=20, exclude=pids0)
        rec["serving_after"] = t_new is not None
        rec["new_pids"] = sorted(pids1)
        sig_rel = t_sig - srv.t0
        readies = []
        for ev in ("lifespan-ready", "imported"):
            evs = sorted(t for t, pid in srv.app_events(ev) if t >= sig_rel and pid not in pids0)
            if evs:
                readies = evs
                break
        rec["new_ready_s"] = (readies[n - 1] - sig_rel) if len(readies) >= n else None
    srv.stop(cli.sig(cfg.term_signal))
    time.sleep(0.3)
    return rec


def main():
    ap = cli.base_args(__doc__)
    ap.add_argument("--duration", type=int, default=12)
    ap.add_argument("--at", type=float, default=3.0, help="seconds into the wrk run to send the signal")
    ap.add_argument("--no-control", action="store_true")
    args = cli.parse(ap, smoke={"duration": 2, "at": 0.5, "no_control": True})
    cfg = cli.resolve(args)
    n = args.workers
    control = None if args.no_control else one(args, cfg, n, "control", False)
    trials = [one(args, cfg, n, rep, True) for rep in range(args.reps)]
    summ = {
        k: results.summary([t.get(k) for t in trials])
        for k in (
            "old_gone_s",
            "new_ready_s",
            "requests",
            "non2xx",
            "socket_errors",
            "sock_connect",
            "sock_read",
            "sock_write",
            "sock_timeout",
            "lat_max_ms",
            "lat_p99_ms",
        )
    }
    if control and control.get("requests"):
        summ["requests_vs_control"] = results.summary(
            [t["requests"] / control["requests"] for t in trials if t.get("requests")]
        )
    cli.emit(
        args,
        {
            "bench": "reload",
            "label": cfg.label,
            "workers": n,
            "env": cfg.env,
            "cmd": cfg.cmd,
            "signal": cfg.reload_signal,
            "duration": args.duration,
            "at": args.at,
            "control": control,
            "trials": trials,
            "summary": summ,
        },
    )


if __name__ == "__main__":
    main()
