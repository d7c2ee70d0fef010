"""Settings of the workers: how many, what they run, and when they are judged
stuck, crashed or due for recycling.

Declared once here; config.py gathers every group into :class:`~supervisor.settings.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        "in the master with --preload).",
    )
    preload: bool = _setting(
        False,
        flags=("--preload/--no-preload",),
        kind="bool",
        group="Workers",
        help="Import TARGET in the master before forking (shared memory, fast "
        "respawn) instead of in each worker.",
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
