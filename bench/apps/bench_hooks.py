"""pg-supervise hooks for bench/supervisor_bench.py: print the readiness marker."""

import os
import sys
import time


def worker_ready(worker):
    print(f"BENCH-READY pid={os.getpid()} t={time.time():.6f}", file=sys.stderr, flush=True)
