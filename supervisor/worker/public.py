"""``Worker``: a running worker, as the application sees it from inside."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from supervisor.database import registry
from supervisor.errors import ConfigError
from supervisor.logging import get_logger
from supervisor.settings.config import Config
from supervisor.shared import channel
from supervisor.worker.time_budget import Deadline

if TYPE_CHECKING:
    from supervisor.database.pools import Database
    from supervisor.http.sockets import Listener

log = get_logger()


def heartbeat_interval(timeout: float) -> float | None:
    """How often to beat: four times per --timeout, at most every 10 s; never
    when the timeout is off (nothing reads the beats then)."""
    return min(10.0, timeout / 4) if timeout > 0 else None


class Worker:
    """A running worker, seen from inside it.

    It is the argument of ``main(worker)`` and of the ``after_fork``,
    ``worker_ready`` and ``worker_exit`` hooks. ``id`` is stable (1..N): a
    replacement takes the id of the worker it replaces. ``stopping`` is set
    when the worker should finish its current work and return.
    """

    def __init__(
        self,
        id: int,
        config: Config,
        heartbeat: channel.Heartbeat,
        database: Database | None = None,
        report_fd: int = -1,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.id = id
        self.pid = os.getpid()
        self.config = config
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.listeners: list[Listener] = list(listeners or [])  # the master's sockets
        # Set when the master retires this worker because a replacement is
        # ready (reload, recycle, scale-down), as opposed to a full shutdown:
        # servers then let idle keep-alive clients finish politely.
        self.retiring = False
        # this worker's recycling threshold, jittered so workers do not all go at once
        self.max_requests = (
            config.max_requests + random.randint(0, config.max_requests_jitter) if config.max_requests else 0
        )
        self._heartbeat = heartbeat
        self._manual_heartbeat = False  # the target beats itself: only its beats count
        self._beats_from_loop = False  # a runner beats from its event loop, not the control thread
        self._beat_interval = heartbeat_interval(config.timeout)
        self._lock = threading.Lock()
        self._stop_callbacks: list[Callable[[], None]] = []
        self._database = database
        self._report_fd = report_fd
        self._recycle_asked = False

    @property
    def db(self) -> Database:
        """The supervisor's database (``--database-url``), with this worker's own pool."""
        database = (
            self._database
            if self._database is not None and not self._database.is_default
            else registry.default()
        )
        if database is None:
            raise ConfigError("no database configured: pass --database-url or set DATABASE_URL")
        return cast("Database", database)

    def deadline(self, seconds: float) -> Deadline:
        """A unit of work with a deadline: ``with worker.deadline(5): handle(job)``
        (``async with`` in an async ``main``). Its pool checkouts wait at most
        the time left, and a query still running at the deadline is cancelled
        in PostgreSQL (see :class:`~supervisor.worker.time_budget.Deadline`)."""
        return Deadline(seconds)

    def request_recycle(self, reason: str) -> None:
        """Ask the master to replace this worker (a new one is started first)."""
        if not self._recycle_asked:
            self._recycle_asked = True
            log.info("asking to be replaced", reason=reason)
            channel.send(self._report_fd, channel.RECYCLE, reason)

    def heartbeat(self) -> None:
        """Tell the master this worker is making progress.

        Until a target calls this, the worker beats on its own: from a thread
        for a synchronous ``main``, from inside the event loop for an async one
        (so a blocked loop is caught). After the first call only explicit calls
        count, so a loop that hangs for longer than ``--timeout`` gets the
        worker killed and replaced.
        """
        self._manual_heartbeat = True
        self._heartbeat.beat()

    def count_work(self, n: int = 1) -> None:
        """Add to the units of work shown in the master's status line (USR1)."""
        self._heartbeat.add_work(n)

    async def stop_requested(self) -> None:
        """Wait, in an event loop, until the worker is asked to stop."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def resolve_done() -> None:
            if not done.done():
                done.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(resolve_done)

        with self._lock:
            if self.stopping.is_set():
                return
            self._stop_callbacks.append(wake)
        try:
            await done
        finally:
            with self._lock:
                if wake in self._stop_callbacks:
                    self._stop_callbacks.remove(wake)

    def _request_stop(self) -> None:
        with self._lock:
            self.stopping.set()
            callbacks = list(self._stop_callbacks)
        for callback in callbacks:
            callback()

    def __repr__(self) -> str:
        return f"<Worker id={self.id} pid={self.pid}>"
