"""A promoted worker lingers 3 s in worker_exit before it becomes the mold: a
window in which a test can kill it, as the OOM killer might."""

import time


def worker_exit(worker):
    if worker.molding:
        time.sleep(3)
