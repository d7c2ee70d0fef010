#!/usr/bin/env python3
"""External kills under load: SIGKILL the newest worker every --every s for
--duration s (what the OOM killer does to one leaky worker), under a closed
loop of client threads.

Per kill it records replaced_s (kill -> first successful response from a
worker pid not seen before); per run, whether the master was still running at
the end, the failed and refused requests, and the requests served. Responses
carry X-Worker-Pid, so the new worker is recognised without help from the
server.
"""

import os
import signal
import time

from harness import cli, load, procs, results
from harness.server import now


def main():
    ap = cli.base_args(__doc__)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between kills")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of kills")
    ap.add_argument("--load-threads", type=int, default=8)
    ap.add_argument("--keepalive", action="store_true", help="clients reuse connections")
    args = cli.parse(ap, smoke={"duration": 4.0})
    cfg = cli.resolve(args)
    n = args.workers
    runs = []
    for rep in range(args.reps):
        srv, _pids = cfg.serve_ready(n, cli.logpath(args, cfg, f"kills-n{n}-{rep}"))
        ld = load.Load(srv.port, threads=args.load_threads, path="/", keepalive=args.keepalive).start()
        time.sleep(1.0)
        t_start, kills = now(), []
        while now() - t_start < args.duration and procs.alive(srv.pid):
            t_next = now() + args.every
            kids = procs.children(srv.pid)
            if kids:
                victim = max(kids)  # the newest: the same slot, kill after kill
                seen = ld.pids_seen()
                t_kill = now()
                os.kill(victim, signal.SIGKILL)
                t_new = ld.wait_pids(1, args.every * 5, exclude=seen | {victim}, after=t_kill)
                kills.append({"victim": victim, "replaced_s": (t_new - t_kill) if t_new else None})
            time.sleep(max(0.0, t_next - now()))
        master_alive = procs.alive(srv.pid)
        ld.stop()
        counts = ld.counts(t_from=t_start)
        srv.stop(cli.sig(cfg.term_signal))
        runs.append(
            {
                "master_alive": master_alive,
                "kills": len(kills),
                "not_replaced": sum(1 for k in kills if k["replaced_s"] is None),
                "replaced_s": results.summary([k["replaced_s"] for k in kills]),
                "ok": counts["ok"],
                "failed": counts["failed"],
                "refused": counts["refused"],
                "errors": counts["errors"],
            }
        )
        time.sleep(0.3)
    cli.emit(
        args,
        {
            "bench": "kills",
            "label": cfg.label,
            "workers": n,
            "env": cfg.env,
            "cmd": cfg.cmd,
            "every_s": args.every,
            "duration_s": args.duration,
            "keepalive": args.keepalive,
            "runs": runs,
            "summary": {
                "master_alive": all(r["master_alive"] for r in runs),
                **{
                    k: results.summary([r[k] for r in runs])
                    for k in ("kills", "not_replaced", "failed", "refused", "ok")
                },
                "replaced_s_median": results.summary([r["replaced_s"]["median"] for r in runs]),
            },
        },
    )


if __name__ == "__main__":
    main()
