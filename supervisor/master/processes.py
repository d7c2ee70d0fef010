"""The process seam: everything the master does to processes, behind one
Protocol, so its decisions are tested with a fake that forks nothing
(``forker.py`` is the real one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from supervisor.shared import channel

if TYPE_CHECKING:
    from supervisor.shared.reexec import Handover
    from supervisor.worker.spec import WorkerSpec


class Spawned(NamedTuple):
    pid: int
    report_fd: int  # read end of the worker's report pipe (-1: none)
    command_fd: int  # write end of its command pipe (-1: none)
    heartbeat: channel.Heartbeat


class Processes(Protocol):
    def spawn(self, spec: WorkerSpec) -> Spawned:
        """Fork the worker ``spec`` describes (through the mold when ``spec.mold_fd`` is set)."""

    def signal(self, pid: int, sig: int) -> None: ...

    def retire(self, pid: int, command_fd: int) -> None:
        """Ask a worker to finish politely and exit (it is being replaced)."""

    def promote(self, pid: int, command_fd: int) -> None:
        """Ask a worker to finish politely, then become the mold (reforking)."""

    def adopt_orphans(self) -> bool:
        """Become the subreaper of our descendants; False where that is not possible."""

    def reap(self) -> list[tuple[int, int]]:
        """Exited children: (pid, exit code or -signal number)."""

    def check_new_code(self, timeout: float) -> str | None:
        """Load the new code and config in a fresh interpreter: None if they
        load, else why not (``--preload`` reloads re-exec only then)."""

    def reexec(self, handover: Handover) -> None:
        """Replace this process's image, handing ``handover`` over. Returns
        only by raising OSError."""
