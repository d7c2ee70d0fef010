"""gunicorn config for bench/supervisor_bench.py: print the same readiness marker
(one atomic write(2), as in bench_hooks.py)."""

import os
import time


def post_worker_init(worker):
    os.write(2, f"BENCH-READY pid={os.getpid()} t={time.time():.6f}\n".encode())
