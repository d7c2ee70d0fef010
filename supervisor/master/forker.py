"""The real process seam (:class:`~supervisor.master.processes.Processes`):
fork, kill, waitpid, execv."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.database import fork_guard
from supervisor.master.processes import Spawned
from supervisor.shared import channel, signals

if TYPE_CHECKING:
    from supervisor.shared.reexec import Handover
    from supervisor.worker.child import WorkerSpec


class Forker:
    """The real :class:`Processes`: fork, kill, waitpid, execv."""

    def __init__(self) -> None:
        self._collected = False

    def spawn(self, spec: WorkerSpec) -> Spawned:
        from supervisor.worker.child import run_worker

        fork_guard.before_fork()
        read_fd, write_fd = os.pipe()
        command_r, command_w = os.pipe()
        heartbeat = channel.Heartbeat()
        spec = replace(
            spec,
            heartbeat=heartbeat,
            report_fd=write_fd,
            command_fd=command_r,
            close_fds=[*spec.close_fds, read_fd, command_w],
        )
        if not self._collected:
            gc.collect()  # garbage frozen now would never be freed
            self._collected = True
        # Move everything the master holds out of the collector's reach: a
        # worker's first full collection then leaves those pages shared (with
        # --preload, the whole app), and the next fork guard sweep only walks
        # objects made since this fork.
        gc.freeze()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals that reach the child before it installs its own handlers would
        # run the master's (writing into the master's wake-up pipe) or kill it:
        # hold them until the child is ready for them (run_worker unblocks).
        spec.sigmask = signal.pthread_sigmask(signal.SIG_BLOCK, signals.MASTER)
        try:
            pid = os.fork()
            if pid == 0:
                run_worker(spec)
        except OSError:  # EAGAIN, ENOMEM: nothing was forked; leave nothing open either
            for fd in (read_fd, write_fd, command_r, command_w):
                os.close(fd)
            heartbeat.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, spec.sigmask)
        os.close(write_fd)
        os.close(command_r)
        os.set_blocking(read_fd, False)
        os.set_blocking(command_w, False)
        return Spawned(pid, read_fd, command_w, heartbeat)

    def signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already dead; the reap will tell
            os.kill(pid, sig)

    def retire(self, pid: int, command_fd: int) -> None:
        try:
            if command_fd < 0:
                raise OSError("no command pipe")
            os.write(command_fd, channel.RETIRE.encode() + b"\n")
        except OSError:  # no pipe (gone, or full): a plain graceful stop
            self.signal(pid, signal.SIGTERM)

    def reap(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return out
            if pid == 0:
                return out
            out.append((pid, os.waitstatus_to_exitcode(status)))

    def check_new_code(self, timeout: float) -> str | None:
        from supervisor.shared import reexec

        return reexec.check_new_code(timeout=timeout)

    def reexec(self, handover: Handover) -> None:
        from supervisor.shared import reexec

        reexec.execute(handover)
