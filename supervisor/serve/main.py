"""Runner for ``main(worker)`` targets, plain or ``async def``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from supervisor.target import Target

if TYPE_CHECKING:
    from supervisor.worker import Worker


def run(target: Target, worker: Worker, ready: Callable[[], None]) -> int:
    """Call ``main(worker)`` until it returns; 0 when it does."""
    if not target.is_async:
        ready()
        target.obj(worker)
        return 0

    async def amain() -> None:
        beats = asyncio.create_task(worker.beat_from_loop())
        try:
            await worker._open_async_databases()
            ready()
            await target.obj(worker)
        finally:
            beats.cancel()
            await worker._close_async_databases()

    asyncio.run(amain())
    return 0
