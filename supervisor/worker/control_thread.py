"""The worker's control thread: signals, the master's commands, the lifeline,
the heartbeat of synchronous targets, and the worker's own limits.

Signals reach this thread as bytes on a pipe: through ``signal.set_wakeup_fd``
(C level, whichever thread got the signal), or, when an event loop such as
uvloop has taken the wake-up fd over, written by the Python handler that loop
then runs. The same thread watches the *lifeline*, a pipe whose only writer
is the master, so end-of-file means the master is gone, even if it was
SIGKILLed.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable

from supervisor.database import registry
from supervisor.logging import get_logger
from supervisor.shared import channel
from supervisor.worker.public import Worker
from supervisor.worker.runtime import check_limits

log = get_logger()

STOP = (signal.SIGTERM, signal.SIGINT)
MEMORY_CHECK_EVERY = 1.0  # seconds between --max-worker-memory / --max-requests checks
ORPHAN_GRACE = 1.5  # seconds an orphaned worker gets to finish before it exits


def rss_mb() -> int:
    """This process's resident memory, in MB (Linux /proc; 0 when unknown)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def log_pool_stats(report_fd: int = -1) -> None:
    for db in registry.databases():
        stats = db.stats()
        if stats:
            log.info("pool stats", database=db.name, **stats)
    report_pools(report_fd)


def report_pools(report_fd: int) -> None:
    """Tell the master the pools' sizes now; ``supervise status`` shows the last report."""
    pools = {db.name: snap for db in registry.databases() if (snap := db.snapshot())}
    if pools and report_fd >= 0:
        channel.send(report_fd, channel.POOL, json.dumps(pools, separators=(",", ":")))


class Control:
    """Runs in its own daemon thread for the whole life of the worker."""

    def __init__(
        self,
        worker: Worker,
        wake_r: int,
        wake_w: int,
        lifeline_fd: int,
        command_fd: int,
        exit_now: Callable[[int], None],
    ) -> None:
        self.worker = worker
        self.config = worker.config
        self._wake_r = wake_r
        self._wake_w = wake_w
        self._lifeline: int | None = lifeline_fd
        self._command: int | None = command_fd if command_fd >= 0 else None
        self._exit_now = exit_now  # close pools, then os._exit(code)
        self._deadline: float | None = None
        self._deadline_reason = ""
        self._next_memory_check = 0.0
        self._next_stats = time.monotonic() + self.config.pool_stats_interval
        self._thread: threading.Thread | None = None
        self._finished = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="supervise-control", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """End the thread (the worker becomes the mold: one thread must be left)."""
        self._finished = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")
        if self._thread is not None:
            self._thread.join(5.0)

    def stop(self, grace: float, reason: str) -> None:
        """Ask the target to finish; exit anyway after ``grace`` seconds."""
        deadline = time.monotonic() + grace
        if self._deadline is None or deadline < self._deadline:
            self._deadline, self._deadline_reason = deadline, reason
        self.worker._request_stop()

    def _timeout(self) -> float | None:
        """Until the nearest thing this thread must do by itself."""
        worker, cfg, now = self.worker, self.config, time.monotonic()
        waits: list[float] = []
        if not worker._beats_from_loop and worker._beat_interval:
            waits.append(worker._beat_interval)
        if self._deadline is not None:
            waits.append(max(0.0, self._deadline - now))
        if cfg.pool_stats_interval:
            waits.append(max(0.0, self._next_stats - now))
        if cfg.max_worker_memory or cfg.max_requests:
            waits.append(MEMORY_CHECK_EVERY)
        return min(waits) if waits else None

    def _run(self) -> None:
        commands = channel.LineReader()
        worker, cfg = self.worker, self.config
        while True:
            watch = [self._wake_r] + [fd for fd in (self._lifeline, self._command) if fd is not None]
            readable, _, _ = select.select(watch, [], [], self._timeout())
            if self._finished:
                return
            if self._wake_r in readable:
                for signum in os.read(self._wake_r, 64):
                    if signum:  # 0: finish() woke us
                        self._on_signal(signum)
            if self._command is not None and self._command in readable:
                data = os.read(self._command, 256)
                if not data:
                    # the master closed our socket: it is gone, or it gave up on this worker
                    # (a spawn through the mold that answered too late): either way, stop
                    self._command = None
                    if not worker.stopping.is_set():
                        log.warning("the master closed this worker's command socket; stopping")
                        self.stop(min(cfg.graceful_timeout, ORPHAN_GRACE), "master is gone")
                for line in commands.feed(data):
                    if line == channel.RETIRE and not worker.stopping.is_set():
                        log.info(
                            "retiring: a replacement is ready; finishing current work",
                            graceful_timeout_s=cfg.graceful_timeout,
                        )
                        worker.retiring = True
                        self.stop(cfg.graceful_timeout, "graceful timeout")
                    elif line == channel.PROMOTE and not worker.stopping.is_set():
                        log.info("promoted: finishing current work, then becoming the mold")
                        worker.retiring = worker.molding = True
                        self.stop(cfg.graceful_timeout, "graceful timeout")
            if self._lifeline is not None and self._lifeline in readable and not os.read(self._lifeline, 64):
                self._lifeline = None
                log.warning("master process is gone; stopping", grace_s=ORPHAN_GRACE)
                self.stop(min(cfg.graceful_timeout, ORPHAN_GRACE), "master is gone")
            if not worker._beats_from_loop and worker._beat_interval and not worker._manual_heartbeat:
                worker._heartbeat.beat()
            check_limits(worker, worker._heartbeat.work)
            now = time.monotonic()
            if cfg.max_worker_memory and now >= self._next_memory_check:
                self._next_memory_check = now + MEMORY_CHECK_EVERY
                rss = rss_mb()
                if rss > cfg.max_worker_memory:
                    worker.request_recycle(f"memory {rss} MB > --max-worker-memory {cfg.max_worker_memory}")
            if cfg.pool_stats_interval and now >= self._next_stats:
                self._next_stats = now + cfg.pool_stats_interval
                log_pool_stats(worker._report_fd)
            if self._deadline is not None and now >= self._deadline:
                log.warning("did not stop in time; exiting", reason=self._deadline_reason)
                self._exit_now(1)

    def _on_signal(self, signum: int) -> None:
        # A repeated TERM/INT is not an escalation here: Ctrl-C delivers INT to
        # the whole process group and the master adds its own TERM. The master
        # escalates (QUIT) when the user insists.
        worker = self.worker
        if signum in STOP:
            worker.molding = False  # a shutdown: promoted or not, this worker exits
        if signum in STOP and not worker.stopping.is_set():
            log.info(
                "stopping gracefully",
                signal=signal.Signals(signum).name,
                graceful_timeout_s=self.config.graceful_timeout,
            )
            self.stop(self.config.graceful_timeout, "graceful timeout")
        elif signum == signal.SIGQUIT:
            os._exit(0)
        elif signum == signal.SIGUSR1:
            log.info(
                "status",
                uptime_s=round(time.time() - worker.started_at, 3),
                threads=threading.active_count(),
                work=worker._heartbeat.work,
                heartbeat="manual" if worker._manual_heartbeat else "automatic",
            )
            log_pool_stats(worker._report_fd)
