"""The smallest main(worker) target: each worker ticks until it is asked to stop.

    supervise examples.hello:main --workers 2

Try it: Ctrl-C stops gracefully, `kill -HUP <master>` replaces the workers one
at a time, `kill -TTIN`/`-TTOU` add or remove one, `kill -USR1` logs a status
line per worker, `kill -9 <worker>` gets it replaced under the same id.
"""

import logging

from supervisor import Worker

log = logging.getLogger("hello")


def main(worker: Worker) -> None:
    ticks = 0
    # wait() instead of sleep(): returns at once when a stop is requested
    while not worker.stopping.wait(1.0):
        ticks += 1
        worker.count_work()
        log.info("tick", extra={"ticks": ticks})
    log.info("stopping after the current tick", extra={"ticks": ticks})
