#!/usr/bin/env python3
"""Throughput: wrk -t{threads} -c{conns} -d{duration}s on each --path.

One server instance per invocation: wait until all N workers answer, then for
each path a warm-up run (--warmup s, discarded) followed by --reps measured
runs. Reports requests/sec (median, min, max), latency p50/p99 and errors.
For /db set PERF_DB_URL (e.g. --env PERF_DB_URL=postgresql://...).
"""

import time

from harness import cli, load, results


def main():
    ap = cli.base_args(__doc__)
    ap.add_argument("--path", action="append", default=[], help="default: /")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = cli.parse(ap, smoke={"duration": 1, "warmup": 0})
    cfg = cli.resolve(args)
    n = args.workers
    paths = args.path or ["/"]
    srv = cfg.server(n, cli.logpath(args, cfg, f"throughput-n{n}"))
    srv.start()
    try:
        _, t_ready, _pids = load.probe_ready(srv.port, n, timeout=60)
        if t_ready is None:
            raise SystemExit(f"{cfg.label}: workers never became ready")
        for path in paths:
            if args.warmup:
                load.run_wrk(srv.port, path, args.threads, args.conns, args.warmup)
            runs = []
            for _ in range(args.reps):
                r = load.run_wrk(srv.port, path, args.threads, args.conns, args.duration)
                r.pop("raw", None)
                runs.append(r)
                time.sleep(0.5)
            cli.emit(
                args,
                {
                    "bench": "throughput",
                    "label": cfg.label,
                    "workers": n,
                    "env": cfg.env,
                    "cmd": cfg.cmd,
                    "path": path,
                    "wrk": f"-t{args.threads} -c{args.conns} -d{args.duration}s",
                    "runs": runs,
                    "summary": {
                        k: results.summary([r.get(k) for r in runs])
                        for k in ("rps", "lat_p50_ms", "lat_p99_ms", "non2xx", "socket_errors")
                    },
                },
            )
    finally:
        srv.stop(cli.sig(cfg.term_signal))


if __name__ == "__main__":
    main()
