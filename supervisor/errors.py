"""The one error hierarchy. Library code raises these; ``cli.py`` and
``Supervisor.run()`` turn them into one line and an exit code."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of ``supervise`` (the contract in docs/reference.md#exit-codes)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    BOOT_FAILED = 3
    TARGET = 4
    MIGRATION = 5
    CRASH_LOOP = 6
    NOT_RUNNING = 7  # status, reload, scale, stop: no master to talk to


class SupervisorError(Exception):
    """Base class: something the user can fix, reported as one line."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(SupervisorError):
    """A setting is invalid; the message names the setting and where it came from."""

    exit_code = ExitCode.USAGE


class NameClashError(ConfigError):
    """Supervisord's ``supervisor`` distribution is installed beside pg-supervise."""


class TargetError(SupervisorError):
    """The target could not be imported, or is not a kind we can run."""

    exit_code = ExitCode.TARGET


class HookError(SupervisorError):
    """A user hook raised; carries the hook name and the original exception."""

    def __init__(self, hook: str, where: str, exc: BaseException) -> None:
        super().__init__(f"hook {hook} ({where}) failed: {type(exc).__name__}: {exc}")
        self.hook = hook
        self.where = where
        self.original = exc


class ForkSafetyError(SupervisorError):
    """A pool or connection was used in a process other than the one that opened it."""


class MigrationError(SupervisorError):
    """Migrations failed (nothing of the failed one is applied) or the lock timed out."""

    exit_code = ExitCode.MIGRATION


class DatabaseUnavailableError(MigrationError):
    """PostgreSQL did not accept a connection (at start: within --db-wait-timeout)."""


class WorkerBootError(SupervisorError):
    """A worker failed to become ready (exited, raised or timed out while booting)."""

    exit_code = ExitCode.BOOT_FAILED


class CrashLoopError(SupervisorError):
    """Workers kept crashing after boot faster than the crash-loop policy allows."""

    exit_code = ExitCode.CRASH_LOOP
