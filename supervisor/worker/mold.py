"""The mold: the process new workers are forked from (reforking).

The mold of generation 0 is forked by the master to import a preloaded app
(``child._seed``), so that the master never holds a copy of it. A worker the
master promotes later finishes its current requests as if retired, then,
instead of exiting, becomes the next mold. Either way:

    quiesce:  ``worker_exit`` runs, its pools close, every thread but this one
              ends; the fork guard proves no PostgreSQL connection is left
    freeze:   ``gc.collect()`` then ``gc.freeze()`` (and the free heap pages
              handed back, shared/heap.py): what it warmed (imports,
              URL resolvers, compiled templates, caches) moves out of the
              collector's reach, so it stays shared with the workers forked
              from it instead of being copied by their first full collection
    serve:    "spawn SEQ SLOT GENERATION REFORK_AT" from the master, with the
              new worker's report pipe, command socket and heartbeat page, is
              answered by a double fork: the middle process exits at once, so
              the worker's parent becomes the master (a child subreaper), which
              reaps it and sees its exit like any other worker's. The answer
              carries SEQ, so one the master stopped waiting for is told apart

A mold serves no requests and holds no connection; it beats its heartbeat
while it waits, so a stuck mold is killed like a stuck worker. It exits when
the master closes its command socket, or when the master is gone.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

from supervisor.database import fork_guard
from supervisor.logging import get_logger
from supervisor.shared import channel, heap, proctitle

if TYPE_CHECKING:
    from supervisor.target import Target
    from supervisor.worker.spec import WorkerSpec

log = get_logger()

THREADS_GRACE = 5.0  # seconds for the worker's other threads to end before it refuses to be a mold
BEAT_EVERY = 1.0


def _exit_now(signum: int, frame: object) -> None:
    os._exit(0)


def end_on_stop_signals() -> None:
    """A mold has no control thread: TERM and INT take their default action
    (they end it); QUIT (a fast stop) ends it too, without the core dump of its
    default."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, _exit_now)


class MoldRefused(Exception):
    """The worker cannot fork safely (a thread that will not end): it exits instead."""


class MoldNotNow(MoldRefused):
    """Only a thread of ours is still busy (a request past its deadline, a
    query cancel in flight): this worker exits, and a later promotion may work."""


TRANSIENT_THREADS = ("wsgi", "supervise-cancel")  # request threads and query cancels: they end


def quiesce(spec: WorkerSpec) -> None:
    """Leave one thread and no connection, then freeze what is warm."""
    deadline = time.monotonic() + THREADS_GRACE
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others and all(name.startswith(TRANSIENT_THREADS) for name in others):
        raise MoldNotNow(f"threads still running: {', '.join(others)}")
    if others:
        raise MoldRefused(f"threads still running: {', '.join(others)}")
    strays = fork_guard.before_fork()  # closes (and names) any connection left open
    if strays:
        log.warning("connections were still open in the mold; closed before any fork", closed=strays)
    gc.collect()  # garbage frozen now would never be freed
    gc.freeze()
    heap.release_free_pages()


class Mold:
    def __init__(
        self,
        spec: WorkerSpec,
        target: Target,
        generation: int,
        close_fds: list[int],
        run_worker: Callable[[WorkerSpec], NoReturn],
    ) -> None:
        self.spec = spec
        self.target = target
        self.generation = generation
        self._close_fds = close_fds  # this process's own descriptors, closed in each new worker
        self._run_worker = run_worker  # child.run_worker: the new worker's whole life

    def serve(self) -> int:
        spec = self.spec
        proctitle.set_title(f"mold gen {self.generation} {spec.config.target}")
        signal.set_wakeup_fd(-1)
        end_on_stop_signals()
        sock = socket.socket(fileno=spec.command_fd)  # the same fd: each new worker closes it
        channel.send(spec.report_fd, channel.MOLD, str(self.generation))
        log.info("mold ready", generation=self.generation)
        try:
            return self._loop(sock)
        finally:
            sock.detach()

    def _loop(self, sock: socket.socket) -> int:
        watch = [sock.fileno()] + ([self.spec.lifeline_fd] if self.spec.lifeline_fd >= 0 else [])
        buffer = b""
        while True:
            self.spec.heartbeat.beat()
            readable, _, _ = select.select(watch, [], [], BEAT_EVERY)
            if self.spec.lifeline_fd in readable and not os.read(self.spec.lifeline_fd, 64):
                log.info("mold exiting: the master is gone")
                return 0
            if sock.fileno() not in readable:
                continue
            # the kernel never merges two messages that carry descriptors: these are one spawn's
            data, fds, _, _ = socket.recv_fds(sock, 4096, 8)
            if not data:
                return 0  # the master closed our socket: no more workers from this mold
            buffer += data
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                kind, _, text = line.decode().partition(" ")
                if kind == channel.RETIRE:
                    log.info("mold exiting: retired by the master (a newer mold, or nothing left to fork)")
                    return 0
                fields = text.split()
                if (
                    kind != channel.SPAWN
                    or len(fds) != 3
                    or len(fields) != 4
                    or not all(f.isdigit() for f in fields)
                ):
                    for fd in fds:
                        os.close(fd)
                    fds = []
                    continue
                seq, slot, generation, refork_at = (int(f) for f in fields)
                kind, _, rest = self._spawn(slot, generation, refork_at, *fds).partition(" ")
                fds = []
                sock.sendall(f"{kind} {seq} {rest}\n".encode())

    def _spawn(
        self, slot: int, generation: int, refork_at: int, report_fd: int, command_fd: int, heartbeat_fd: int
    ) -> str:
        """Fork the worker for ``slot`` through a middle process, so the master
        adopts it; its pid, or why not."""
        answer_r, answer_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT))
        try:
            middle = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for fd in (answer_r, answer_w, report_fd, command_fd, heartbeat_fd):
                os.close(fd)
            return f"{channel.FAILED} {exc.errno} {exc.strerror}"
        if middle == 0:
            os.close(answer_r)
            os.close(self.spec.command_fd)  # the mold's socket: if the mold dies, the master must see it
            self._middle(slot, generation, refork_at, report_fd, command_fd, heartbeat_fd, answer_w, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (answer_w, report_fd, command_fd, heartbeat_fd):
            os.close(fd)
        chunks = []
        while chunk := os.read(answer_r, 256):
            chunks.append(chunk)
        os.close(answer_r)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(middle, 0)
        return b"".join(chunks).decode() or f"{channel.FAILED} 0 the forking process died"

    def _middle(
        self,
        slot: int,
        generation: int,
        refork_at: int,
        report_fd: int,
        command_fd: int,
        heartbeat_fd: int,
        answer_w: int,
        mask: set[int | signal.Signals],
    ) -> None:
        """In the middle process: fork the worker, say its pid, exit at once."""
        try:
            pid = os.fork()
        except OSError as exc:
            os.write(answer_w, f"{channel.FAILED} {exc.errno} {exc.strerror}".encode())
            os._exit(0)
        if pid == 0:
            # the mold's own descriptors go before this process opens any: a number
            # freed above (the command socket) must not be closed again once reused
            for fd in self._close_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            os.close(answer_w)
            heartbeat = channel.Heartbeat(heartbeat_fd)
            os.close(heartbeat_fd)
            self._run_worker(
                replace(
                    self.spec,
                    id=slot,
                    generation=generation,
                    refork_at=refork_at,
                    target=self.target,
                    heartbeat=heartbeat,
                    report_fd=report_fd,
                    command_fd=command_fd,
                    close_fds=[],
                    close_heartbeats=[self.spec.heartbeat],
                    sigmask=mask,
                    seed=False,
                )
            )
        os.write(answer_w, f"{channel.SPAWNED} {pid}".encode())
        os._exit(0)
