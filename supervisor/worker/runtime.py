"""``Runtime``: everything a runner may use, and nothing else.

A runner (``runners/``) turns a target into a running server or a call of
``main``. It gets the target and one :class:`Runtime`; through it, it tells the
worker when it is ready, opens and closes the worker's async pools inside its
own event loop, beats the heartbeat from that loop, counts what it served and
learns when to stop. A new kind of runner needs nothing beyond this class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from supervisor.database import registry
from supervisor.logging import get_logger
from supervisor.worker.admission import Admission, QueuePolicy, Tally
from supervisor.worker.public import Worker

if TYPE_CHECKING:
    from supervisor.http.sockets import Listener
    from supervisor.settings.config import Config

log = get_logger()


class StoppedBeforeReady(Exception):
    """Raised by :meth:`Runtime.ready` when a stop arrived while the worker was
    still booting: the runner unwinds quietly and the worker exits 0."""


class Runtime:
    """The worker as a runner sees it."""

    def __init__(
        self,
        worker: Worker,
        ready: Callable[[], None],
        on_unreachable: Callable[[], None],
    ) -> None:
        self.worker = worker
        self._ready = ready
        self._on_unreachable = on_unreachable
        # a runner's own measure of capacity: since when it has had none (every
        # WSGI request thread stuck on one request), None while it has some
        self.stalled_since: Callable[[], float | None] = lambda: None
        cfg = worker.config
        # the managed queue of every pool and request thread (worker/admission.py),
        # counted in the heartbeat page the master reads
        self.admission = Admission(
            QueuePolicy(shed=cfg.shed, lifo=cfg.queue_order == "adaptive", target=cfg.queue_target),
            Tally(worker._heartbeat.load),
        )

    @property
    def config(self) -> Config:
        return self.worker.config

    @property
    def listeners(self) -> list[Listener]:
        """The sockets the master bound (empty for a ``main`` target)."""
        return self.worker.listeners

    @property
    def retiring(self) -> bool:
        """A replacement is ready: let idle keep-alive clients go politely."""
        return self.worker.retiring

    def stopping(self) -> bool:
        return self.worker.stopping.is_set()

    async def stop_requested(self) -> None:
        """Wait, in the runner's event loop, until the worker is asked to stop."""
        await self.worker.stop_requested()

    def ready(self) -> None:
        """Call exactly once, when the target can do work (``main``: just before
        calling it; a server: once it listens). Raises StoppedBeforeReady."""
        if self.stopping():
            raise StoppedBeforeReady
        self._ready()

    async def open_pools(self) -> None:
        """This worker's async pools, opened in the running event loop (async
        targets only: a sync target's pools are open before the runner starts)."""
        for db in registry.in_use():
            await db._open_async(self.worker.id, self.config, self._on_unreachable, self.admission)

    async def close_pools(self) -> None:
        for db in registry.databases():
            try:
                await db._close_async()
            except Exception:
                log.exception("closing a database pool failed", database=db.name)

    async def beat(self) -> None:
        """Beat from inside the running event loop until cancelled, so a loop
        blocked longer than ``--timeout`` gets the worker replaced. A beat
        carries :attr:`stalled_since` when the runner says it has no capacity
        left, so a worker whose request threads are all stuck ages as well."""
        worker = self.worker
        worker._beats_from_loop = True
        if worker._beat_interval is None:
            return
        while True:
            if not worker._manual_heartbeat:
                worker._heartbeat.beat(self.stalled_since())
            await asyncio.sleep(worker._beat_interval)

    def served(self, total: int) -> None:
        """``total`` units of work (requests) done so far: shown by USR1, and
        the worker asks to be recycled at its --max-requests."""
        heartbeat = self.worker._heartbeat
        heartbeat.add_work(total - heartbeat.work)
        check_limits(self.worker, total)


def check_limits(worker: Worker, done: int) -> None:
    """Recycle once ``done`` units of work reach this worker's --max-requests."""
    if worker.max_requests and done >= worker.max_requests:
        worker.request_recycle(f"max requests ({worker.max_requests})")
