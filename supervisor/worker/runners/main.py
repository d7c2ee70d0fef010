"""Runner for ``main(worker)`` targets, plain or ``async def``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from supervisor.target import Target

if TYPE_CHECKING:
    from supervisor.worker.runtime import Runtime


def run(target: Target, runtime: Runtime) -> int:
    """Call ``main(worker)`` until it returns; 0 when it does."""
    if not target.is_async:
        runtime.ready()
        target.obj(runtime.worker)
        return 0

    async def amain() -> None:
        beats = asyncio.create_task(runtime.beat())
        try:
            await runtime.open_pools()
            runtime.ready()
            await target.obj(runtime.worker)
        finally:
            beats.cancel()
            await runtime.close_pools()

    asyncio.run(amain())
    return 0
