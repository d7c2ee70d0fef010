"""pg-supervise: a multiprocess worker supervisor for PostgreSQL applications."""

from supervisor._version import __version__
from supervisor.api import Supervisor
from supervisor.context import MasterInfo, WorkerInfo
from supervisor.errors import (
    ConfigError,
    CrashLoopError,
    ExitCode,
    HookError,
    SupervisorError,
    TargetError,
    WorkerBootError,
)
from supervisor.worker import Worker

__all__ = [
    "ConfigError",
    "CrashLoopError",
    "ExitCode",
    "HookError",
    "MasterInfo",
    "Supervisor",
    "SupervisorError",
    "TargetError",
    "Worker",
    "WorkerBootError",
    "WorkerInfo",
    "__version__",
]
