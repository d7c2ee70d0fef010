"""main(worker) targets used by the integration tests."""

import asyncio
import gc
import logging
import os
import threading
import time

log = logging.getLogger("testapp")


def wait(worker):
    log.info("main started", extra={"slot": worker.id})
    threading.Thread(target=lambda: log.info("hello from a thread"), name="app-thread").start()
    worker.stopping.wait()
    log.info("main done")


def stubborn(worker):
    """Ignores the stop request."""
    log.info("main started")
    while True:
        time.sleep(0.05)


def crash(worker):
    worker.stopping.wait(0.05)
    raise RuntimeError("boom")


def crash_slot_2(worker):
    if (
        worker.id == 2
        and os.environ.get("CRASH_ONCE_FILE")
        and not os.path.exists(os.environ["CRASH_ONCE_FILE"])
    ):
        open(os.environ["CRASH_ONCE_FILE"], "w").close()
        raise RuntimeError("slot 2 crashes once")
    worker.stopping.wait()


def finish(worker):
    log.info("job done", extra={"slot": worker.id})


def stuck_in_here(worker):
    worker.heartbeat()
    time.sleep(1000)


def hang(worker):
    if os.environ.get("HANG_ONCE_FILE") and os.path.exists(os.environ["HANG_ONCE_FILE"]):
        worker.stopping.wait()
        return
    if os.environ.get("HANG_ONCE_FILE"):
        open(os.environ["HANG_ONCE_FILE"], "w").close()
    stuck_in_here(worker)


async def async_block(worker):
    await asyncio.sleep(0.05)
    time.sleep(1000)  # blocks the event loop


async def async_wait(worker):
    log.info("async main started")
    await worker.stop_requested()
    log.info("async main done")


def report(worker):
    log.info("worker facts", extra={"freeze_count": gc.get_freeze_count(), "slot": worker.id})
    worker.stopping.wait()
