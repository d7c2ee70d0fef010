"""The second worker ever booted takes 1.5 s in worker_ready (a boot counter in
$SLOWBOOT_FLAG): it keeps a re-executed master's first worker booting while a
second HUP arrives."""

import os
import time


def worker_ready(worker):
    path = os.environ["SLOWBOOT_FLAG"]
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        if len(f.read()) == 2:
            time.sleep(1.5)
