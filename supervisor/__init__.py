"""pg-supervise: a multiprocess worker supervisor for PostgreSQL applications."""

from typing import TYPE_CHECKING, Any

from supervisor import _argv

# First, before the ~200 ms of imports below: the password of a database URL
# given on the command line leaves `ps` (see _argv for what this cannot cover).
if _argv.started_as_cli():
    _argv.hide_passwords()

from supervisor._version import __version__
from supervisor.api import Supervisor
from supervisor.context import MasterInfo, WorkerInfo
from supervisor.database.retry import is_transient, retry_transient
from supervisor.errors import (
    ConfigError,
    CrashLoopError,
    ExitCode,
    ForkSafetyError,
    HookError,
    MigrationError,
    SupervisorError,
    TargetError,
    WorkerBootError,
)
from supervisor.worker import Worker
from supervisor.worker.time_budget import set_request_timeout

if TYPE_CHECKING:
    from supervisor.database.pools import Database


def __getattr__(name: str) -> Any:
    # Database imports psycopg (~80 ms); a supervisor without a database skips it.
    if name == "Database":
        from supervisor.database.pools import Database

        return Database
    raise AttributeError(f"module 'supervisor' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "CrashLoopError",
    "Database",
    "ExitCode",
    "ForkSafetyError",
    "HookError",
    "MasterInfo",
    "MigrationError",
    "Supervisor",
    "SupervisorError",
    "TargetError",
    "Worker",
    "WorkerBootError",
    "WorkerInfo",
    "__version__",
    "is_transient",
    "retry_transient",
    "set_request_timeout",
]
