"""gunicorn config for bench/supervisor_bench.py: print the same readiness marker."""

import os
import sys
import time


def post_worker_init(worker):
    print(f"BENCH-READY pid={os.getpid()} t={time.time():.6f}", file=sys.stderr, flush=True)
