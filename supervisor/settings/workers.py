"""Settings of the workers: how many, what they run, and when they are judged
stuck, crashed or due for recycling.

Declared once here; config.py gathers every group into :class:`~supervisor.settings.config.Config`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from supervisor.errors import ConfigError
from supervisor.settings.declare import (
    MAX_COUNT,
    MAX_MEMORY_MB,
    MAX_SECONDS,
    MAX_WORKERS,
    _setting,
    default_workers,
)


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    workers: int = _setting(
        default_factory=default_workers,
        flags=("-w", "--workers"),
        kind="int",
        minimum=1,
        maximum=MAX_WORKERS,
        metavar="N",
        group="Workers",
        help="Number of worker processes.",
        default_doc="CPUs available (affinity, capped by a container's CPU limit)",
    )
    interface: str = _setting(
        "auto",
        flags=("--interface",),
        kind="choice",
        choices=("auto", "asgi", "wsgi", "main"),
        group="Workers",
        help="How to treat TARGET; 'auto' tells them apart by signature.",
    )
    factory: bool = _setting(
        False,
        flags=("--factory/--no-factory",),
        kind="bool",
        group="Workers",
        help="TARGET is a function returning the app; it is called in each worker (or once "
        "before forking with --preload, where the app is imported).",
    )
    preload: bool = _setting(
        False,
        flags=("--preload/--no-preload",),
        kind="bool",
        group="Workers",
        help="Import TARGET once before forking (shared memory, fast respawn) instead of in "
        "each worker: in the master, or for an app server with reforking in a mold of "
        "generation 0.",
    )
    timeout: float = _setting(
        30.0,
        flags=("--timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Workers",
        help="Kill and replace a worker that shows no progress for S seconds (0: off): a main "
        "target that stops beating, an event loop that blocks, or a WSGI worker whose every "
        "request thread is stuck on one request. Also how long a WSGI request waits on a "
        "client that takes or sends nothing.",
    )
    boot_timeout: float = _setting(
        60.0,
        flags=("--boot-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Workers",
        help="Seconds a worker may take to become ready (0: no limit).",
    )
    graceful_timeout: float = _setting(
        30.0,
        flags=("--graceful-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Workers",
        help="Seconds a stopping worker may take to finish its work before it is killed.",
    )
    crash_limit: int = _setting(
        5,
        flags=("--crash-limit",),
        kind="int",
        minimum=0,
        maximum=10_000,
        metavar="N",
        group="Workers",
        help="Give up (exit 6) when one worker slot crashes more than N times in a "
        "row without a healthy period (0: never give up).",
    )
    crash_reset: float = _setting(
        30.0,
        flags=("--crash-reset",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Workers",
        help="A worker that stays up S seconds clears its slot's crash count and backoff.",
    )
    max_requests: int = _setting(
        0,
        flags=("--max-requests",),
        kind="int",
        minimum=0,
        maximum=MAX_COUNT,
        metavar="N",
        group="Workers",
        help="Replace a worker after N requests (HTTP) or N units of worker.count_work() "
        "(main), through the rolling path (0: never).",
    )
    max_requests_jitter: int = _setting(
        0,
        flags=("--max-requests-jitter",),
        kind="int",
        minimum=0,
        maximum=MAX_COUNT,
        metavar="N",
        group="Workers",
        help="Add a random 0..N to each worker's --max-requests, so they are not all replaced at once.",
    )
    max_worker_memory: int = _setting(
        0,
        flags=("--max-worker-memory",),
        kind="int",
        minimum=0,
        maximum=MAX_MEMORY_MB,
        metavar="MB",
        group="Workers",
        help="Replace a worker whose resident memory exceeds MB megabytes (0: never).",
    )
    refork_after: str = _setting(
        "auto",
        flags=("--refork-after",),
        kind="str",
        metavar="N[,N...]|off",
        group="Workers",
        help="Reforking: the first worker to serve N requests stops taking new ones and becomes the "
        "mold; new workers are forked from it and replace the others one at a time, sharing what it "
        "warmed. Each number is for the next generation; after the last, no more (off: never). "
        "Linux, --http uvicorn.",
        default_doc="100,1000 with --preload on Linux and --http uvicorn, else off",
    )


# bench/memory.py: a worker's first hundred requests warm most of what it ever
# will (the first refork takes the gain); the second shares what rarer requests
# warm later, then no more rollouts
REFORK_DEFAULT = (100, 1000)


def refork_schedule(config: WorkerSettings, http: str, platform: str = sys.platform) -> tuple[int, ...]:
    """The request counts after which each generation's first worker becomes
    the mold: () when reforking is off. Raises ConfigError for a schedule that
    is not one, or that this platform or engine cannot follow."""
    raw = config.refork_after.strip().lower()
    if raw == "auto":
        return REFORK_DEFAULT if config.preload and http == "uvicorn" and platform == "linux" else ()
    if raw in ("off", "none", "false", "0"):
        return ()
    try:
        counts = tuple(int(part) for part in raw.split(","))
    except ValueError:
        counts = ()
    if not counts or any(n < 1 or n > MAX_COUNT for n in counts):
        raise ConfigError(
            f"refork_after: expected request counts such as 1000 or 1000,10000 (each from 1 to "
            f"{MAX_COUNT}), or off; got {config.refork_after!r}"
        )
    if platform != "linux":
        raise ConfigError("refork_after: reforking needs Linux (a child subreaper); use --refork-after off")
    if http != "uvicorn":
        raise ConfigError(
            f"refork_after: --http {http} runs threads a fork would not carry; use --http uvicorn "
            "or --refork-after off"
        )
    return counts
