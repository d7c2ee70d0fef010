"""pg-supervise hooks for bench/supervisor_bench.py: print the readiness marker.

The line goes out in one write(2) (shorter than PIPE_BUF, so atomic): print()
writes the text and the newline separately when stderr is unbuffered
(PYTHONUNBUFFERED=1), and workers that become ready at the same moment then
interleave their markers on one line.
"""

import os
import time


def worker_ready(worker):
    os.write(2, f"BENCH-READY pid={os.getpid()} t={time.time():.6f}\n".encode())
