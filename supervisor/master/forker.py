"""The real process seam (:class:`~supervisor.master.processes.Processes`):
fork (or ask the mold to), kill, waitpid, execv.

Each worker gets a report pipe (worker -> master lines), a command socket
(master -> worker lines; a socket, so that a worker that becomes the mold can
be handed descriptors on it) and a heartbeat page. A worker forked by the
mold gets the same three, made here and handed to the mold with its "spawn"
line; the mold answers with the new worker's pid, which the master adopts
(it is the workers' subreaper).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import socket
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.database import fork_guard
from supervisor.master.processes import Spawned
from supervisor.shared import channel, heap, signals

if TYPE_CHECKING:
    from supervisor.shared.reexec import Handover
    from supervisor.worker.spec import WorkerSpec


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
MOLD_ANSWER_TIMEOUT = 2.0  # seconds the master waits for the mold's fork (a few ms, normally)


def _command_socket() -> tuple[int, int]:
    """The master's and the worker's ends of a worker's command socket."""
    master, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return master.detach(), worker.detach()


class MoldUnresponsive(OSError):
    """The mold did not answer a spawn in time: it is stopped or stuck."""


def _answer(sock: socket.socket, seq: int) -> str:
    """The mold's answer to spawn ``seq`` (``spawned SEQ PID`` or ``failed SEQ
    ERRNO WHY``), past any answer to an earlier spawn the master gave up on:
    those workers were forked with channels the master has closed; they exit
    on their own."""
    data = b""
    while True:
        while b"\n" not in data:
            chunk = sock.recv(256)
            if not chunk:
                return ""
            data += chunk
        line, _, data = data.partition(b"\n")
        kind, _, rest = line.decode(errors="replace").strip().partition(" ")
        number, _, text = rest.partition(" ")
        if number == str(seq):
            return f"{kind} {text}"


class Forker:
    """The real :class:`Processes`: fork, kill, waitpid, execv."""

    def __init__(self) -> None:
        self._collected = False
        self._spawns = 0  # numbers each spawn asked of the mold, so a late answer is not taken for the next

    def spawn(self, spec: WorkerSpec) -> Spawned:
        if spec.mold_fd >= 0:
            return self._spawn_from_mold(spec)
        from supervisor.worker.child import run_worker

        fork_guard.before_fork()
        read_fd, write_fd = os.pipe()
        command_w, command_r = _command_socket()
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
        heap.release_free_pages()
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

    def _spawn_from_mold(self, spec: WorkerSpec) -> Spawned:
        """Have the mold fork worker ``spec.id``: hand it the worker's ends of
        the three channels and wait (briefly) for its pid."""
        read_fd, write_fd = os.pipe()
        command_w, command_r = _command_socket()
        heartbeat, page_fd = channel.Heartbeat.shareable()
        self._spawns += 1
        seq = self._spawns
        try:
            with socket.socket(fileno=os.dup(spec.mold_fd)) as mold:
                mold.settimeout(MOLD_ANSWER_TIMEOUT)
                line = f"{channel.SPAWN} {seq} {spec.id} {spec.generation} {spec.refork_at}\n".encode()
                socket.send_fds(mold, [line], [write_fd, command_r, page_fd])
                try:
                    answer = _answer(mold, seq)
                except TimeoutError:
                    raise MoldUnresponsive(0, f"no answer within {MOLD_ANSWER_TIMEOUT:g} s") from None
            kind, _, text = answer.partition(" ")
            if kind != channel.SPAWNED:
                code, _, why = text.partition(" ")
                raise OSError(int(code) if code.isdigit() else 0, why or answer or "the mold did not answer")
            pid = int(text)
        except (OSError, ValueError) as exc:
            for fd in (read_fd, command_w):
                os.close(fd)
            heartbeat.close()
            why = getattr(exc, "strerror", None) or str(exc)
            error = MoldUnresponsive if isinstance(exc, MoldUnresponsive) else OSError
            raise error(getattr(exc, "errno", None) or 0, f"the mold could not fork: {why}") from None
        finally:
            for fd in (write_fd, command_r, page_fd):
                os.close(fd)
        os.set_blocking(read_fd, False)
        os.set_blocking(command_w, False)
        return Spawned(pid, read_fd, command_w, heartbeat)

    def retire(self, pid: int, command_fd: int) -> None:
        self._command(pid, command_fd, channel.RETIRE)

    def promote(self, pid: int, command_fd: int) -> None:
        self._command(pid, command_fd, channel.PROMOTE)

    def _command(self, pid: int, command_fd: int, line: str) -> None:
        try:
            if command_fd < 0:
                raise OSError("no command socket")
            os.write(command_fd, line.encode() + b"\n")
        except OSError:  # no socket (gone, or full): a plain graceful stop
            self.signal(pid, signal.SIGTERM)

    def adopt_orphans(self) -> bool:
        """Become the subreaper of every descendant (Linux): a worker the mold
        forks through a middle process that exits becomes our child."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
        except (OSError, AttributeError):
            return False

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
