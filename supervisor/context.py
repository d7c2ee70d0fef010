"""What master hooks receive: a snapshot of the master or of one worker."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from supervisor.settings.config import Config


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as the master sees it.

    ``before_fork`` gets it with ``pid=None``; ``child_exit`` gets it with the
    exit status (``exit_code`` for a normal exit, ``signal`` when killed) and
    ``reason``, which says why it stopped when the master asked it to.
    """

    id: int
    pid: int | None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None

    @property
    def exit_description(self) -> str:
        return describe_exit(self.exit_code, self.signal)


@dataclass(frozen=True)
class MasterInfo:
    """The master as hooks see it; ``exit_code`` is set for ``on_exit``."""

    pid: int
    config: Config
    workers: tuple[WorkerInfo, ...]
    exit_code: int | None = None


def describe_exit(exit_code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {name}"
    if exit_code is None:
        return "still running"
    return f"exited with code {exit_code}"
