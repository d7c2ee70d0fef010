#!/usr/bin/env python3
"""Graceful shutdown: SIGTERM (peer's term_signal) to the master.

Two scenarios, --reps trials each:
  idle:     all workers idle -> time until the master exits and until every
            descendant process is gone
  inflight: a GET /sleep?s=2 is started, SIGTERM is sent --delay s later;
            records whether it completed (200 + body), when, and the exit times
During the shutdown a side thread tries a fresh GET / every 50 ms and records
whether new connections were refused, served or failed.
"""

import threading
import time

from harness import cli, load, procs, results
from harness.server import now


def trial(args, cfg, n, rep, inflight):
    srv, _pids = cfg.serve_ready(
        n, cli.logpath(args, cfg, f"shutdown-n{n}-{rep}-{'inflight' if inflight else 'idle'}")
    )
    time.sleep(0.5)
    srv.track()
    res = {}
    th = None
    if inflight:

        def slow():
            t = now()
            try:
                st, _pid, body = load.http_get(srv.port, f"/sleep?s={args.sleep}", timeout=60)
                res.update(status=st, body=body.decode(errors="replace").strip(), t_done=now())
            except Exception as exc:
                res.update(status=None, error=type(exc).__name__ + ": " + str(exc)[:80], t_done=now())
            res["t_start"] = t

        th = threading.Thread(target=slow, daemon=True)
        th.start()
        time.sleep(args.delay)
    # side probe for new connections during shutdown
    side = {"refused": 0, "served": 0, "failed": 0}
    stop_side = threading.Event()

    def side_probe():
        while not stop_side.is_set():
            try:
                st, _, _ = load.http_get(srv.port, "/", timeout=2)
                side["served" if st == 200 else "failed"] += 1
            except ConnectionRefusedError:
                side["refused"] += 1
            except Exception:
                side["failed"] += 1
            time.sleep(0.05)

    t_term = now()
    srv.send_signal(cli.sig(cfg.term_signal))
    sp = threading.Thread(target=side_probe, daemon=True)
    sp.start()
    exited = srv.wait_exit(args.timeout)
    t_master = now() if exited else None
    t_all = None
    while now() - t_term < args.timeout + 5:
        if not any(procs.alive(p) for p in srv.known):
            t_all = now()
            break
        time.sleep(0.005)
    stop_side.set()
    sp.join()
    if th:
        th.join(timeout=args.timeout)
    rec = {
        "master_exit_s": (t_master - t_term) if t_master else None,
        "all_gone_s": (t_all - t_term) if t_all else None,
        "exit_code": srv.returncode,
        "new_conns": side,
    }
    if inflight:
        ok = res.get("status") == 200 and res.get("body") == "slept"
        rec.update(
            {
                "inflight_completed": ok,
                "inflight_status": res.get("status"),
                "inflight_error": res.get("error"),
                "inflight_done_after_term_s": (res["t_done"] - t_term) if "t_done" in res else None,
            }
        )
    srv.stop()  # no-op if exited; kills leftovers by pid otherwise
    time.sleep(0.3)
    return rec


def main():
    ap = cli.base_args(__doc__)
    ap.add_argument("--sleep", type=float, default=2.0, help="in-flight request duration")
    ap.add_argument("--delay", type=float, default=0.5, help="seconds between starting it and SIGTERM")
    ap.add_argument("--timeout", type=float, default=40.0)
    args = cli.parse(ap, smoke={"sleep": 0.5, "delay": 0.2, "timeout": 10.0})
    cfg = cli.resolve(args)
    n = args.workers
    idle = [trial(args, cfg, n, r, False) for r in range(args.reps)]
    busy = [trial(args, cfg, n, r, True) for r in range(args.reps)]
    cli.emit(
        args,
        {
            "bench": "shutdown",
            "label": cfg.label,
            "workers": n,
            "env": cfg.env,
            "cmd": cfg.cmd,
            "signal": cfg.term_signal,
            "sleep": args.sleep,
            "delay": args.delay,
            "idle": idle,
            "inflight": busy,
            "summary": {
                "idle_master_exit_s": results.summary([t["master_exit_s"] for t in idle]),
                "idle_all_gone_s": results.summary([t["all_gone_s"] for t in idle]),
                "inflight_master_exit_s": results.summary([t["master_exit_s"] for t in busy]),
                "inflight_completed": sum(1 for t in busy if t.get("inflight_completed")),
                "inflight_trials": len(busy),
                "inflight_done_after_term_s": results.summary(
                    [t.get("inflight_done_after_term_s") for t in busy]
                ),
                "new_conns_served_during_shutdown": sum(t["new_conns"]["served"] for t in idle + busy),
                "new_conns_refused_during_shutdown": sum(t["new_conns"]["refused"] for t in idle + busy),
                "new_conns_failed_during_shutdown": sum(t["new_conns"]["failed"] for t in idle + busy),
            },
        },
    )


if __name__ == "__main__":
    main()
