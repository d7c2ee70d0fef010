"""Run a WSGI app under an ASGI server (PEP 3333 on one side, ASGI 3 on the other).

The app always runs in a request thread (``--threads`` of them; one thread is
gunicorn's sync model: one request at a time per worker). The cost of such a
bridge is the hand-off between the event loop and that thread, so it makes as
few as it can:

* a request body that arrives in one piece (most do) is read in the loop before
  the app runs; a longer one is pulled piece by piece when the app reads
  ``wsgi.input``, as a sync server reads its socket, so an app can refuse an
  upload by its length, or stream it, without the server storing it first;
* a response the app returns as a list or tuple comes back to the loop whole,
  with its length, in the same hand-off that ran the app; so does any other
  iterable (a framework's response object) that declares a Content-Length of
  at most ``COLLECT_LIMIT``: its pieces are gathered in the thread;
* any other iterable (a generator, a large file) and ``write()`` go out piece
  by piece, and the thread waits for each piece to be
  sent, so a slow client holds back the app instead of filling memory. A client
  that takes nothing for ``send_timeout`` seconds, or goes away, ends the
  response: the app's iterator is closed, as a failed socket write would end it
  under a sync server.

A client that leaves is seen whatever state its request body is in: the
protocol layer (``protocol``) hands the bridge its connection's "lost" future
in the scope's extensions.

A request waits for a thread in the worker's managed queue (a
``worker/admission.py`` gate with ``ADMITTED_PER_THREAD`` permits per thread),
not in the executor's: there it is ordered, refused when the worker is past
capacity, and dropped, never run, when its client leaves or its deadline
passes while it waits. When
a request ends early while its thread runs, the query the thread is running
is cancelled in PostgreSQL (the connection the request holds, from the
loop, through a short-lived thread: psycopg's cancel blocks); a thread still
busy ``--timeout`` seconds after its request's deadline is reported, stack
and all, and its worker asks to be replaced. A request thread that makes no progress (no piece
sent, no piece of body read) for longer than ``--timeout`` while every other
thread is just as stuck stops the worker's heartbeat (``stalled_since``), so
the master dumps its stacks and replaces it, as gunicorn's sync worker is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import select
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from supervisor.http.wsgi_request import (
    BUDGET,
    CONTINUE,
    LOST,
    ZEROCOPY,
    ClientDisconnected,
    FileWrapper,
    Receive,
    Scope,
    Send,
    WSGIApp,
    _environ,
    _StreamedInput,
)
from supervisor.http.wsgi_response import (
    _NO_BODY,
    _close,
    _next_piece,
    _no_start_response,
    _Response,
    _send_whole,
    _watch_disconnect,
)
from supervisor.logging import get_logger
from supervisor.worker.time_budget import EXPIRED, SHED, TimeBudget, cancel_running_query, current

if TYPE_CHECKING:
    from supervisor.worker.admission import Gate

log = get_logger("supervisor.wsgi")

# Requests admitted from the managed queue per request thread. With one, a thread
# that finishes waits for the event loop to admit the next request, and the loop
# competes for the GIL with the threads it feeds: one-query throughput under
# load fell by 30-45% (wrk -c64, 4 threads, measured). With four, the threads'
# own queue always holds their next request, for at most three requests' time;
# a request whose client left or whose deadline passed there is still not run.
ADMITTED_PER_THREAD = 4
# A response declaring a Content-Length up to this is gathered in the request
# thread and handed to the loop whole: one hand-off instead of one per piece
# plus one for the end (frameworks return their own iterable, seldom a list).
COLLECT_LIMIT = 64 * 1024


class WSGIBridge:
    """An ASGI 3 app that serves ``app`` from ``threads`` request threads."""

    def __init__(
        self,
        app: WSGIApp,
        threads: int = 1,
        send_timeout: float | None = None,
        gate: Gate | None = None,
        on_stuck: Callable[[str], None] | None = None,
        stuck_grace: float | None = None,
    ) -> None:
        self.app = app
        self.threads = threads
        self.send_timeout = send_timeout
        self.gate = gate  # ADMITTED_PER_THREAD permits per thread: where requests queue for one
        self.on_stuck = on_stuck  # a thread outlived its expired request: ask for a replacement
        self.stuck_grace = stuck_grace  # how long it may (None: for ever)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="wsgi")
        self._closing = False
        # one [time] cell per request thread: when its request last made progress, 0.0 when idle
        self._cells: list[list[float]] = []
        self._cell = threading.local()

    def stalled_since(self) -> float | None:
        """When this bridge last had a request thread to spare or making
        progress; None while it has. The worker's heartbeat stops there."""
        cells = self._cells[:]
        if len(cells) < self.threads:
            return None  # a thread was never started: capacity to spare
        since = 0.0
        for cell in cells:
            if cell[0] == 0.0:
                return None
            since = max(since, cell[0])
        return since

    def _progress_cell(self) -> list[float]:
        cell: list[float] | None = getattr(self._cell, "cell", None)
        if cell is None:
            cell = self._cell.cell = [0.0]
            self._cells.append(cell)
        return cell

    def shutdown(self) -> None:
        """The server has stopped: pieces still being streamed end the response."""
        self._closing = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off for WSGI apps; websockets have no WSGI meaning
        ext = scope.get("extensions") or {}
        response = _Response(head=scope["method"] == "HEAD")
        lost: asyncio.Future[None] | None = ext.get(LOST)
        on_lost = response.on_lost
        if lost is not None:
            if lost.done():
                return
            lost.add_done_callback(on_lost)
        # the protocol's loop when it lends itself (get_running_loop() costs a getpid() on 3.11)
        zerocopy = ext.get(ZEROCOPY)
        loop = zerocopy.loop if zerocopy is not None else asyncio.get_running_loop()
        send_continue: Callable[[], None] | None = ext.get(CONTINUE)
        if send_continue is not None:
            # the client sends its body only once told to: that is the app's first read
            first: dict[str, Any] = {"type": "http.request", "body": b"", "more_body": True}
            response.awaiting_continue = True
        else:
            first = await receive()
            if first["type"] == "http.disconnect":
                return  # the client left before its request was complete: nothing to run
        body: IO[bytes] | _StreamedInput
        if first.get("more_body", False):
            read_timeout = self.send_timeout

            def pull() -> bytes | None:  # request thread: the next piece, None at the end
                if self._closing:
                    raise ClientDisconnected("the server is stopping")
                if response.awaiting_continue and send_continue is not None:
                    response.awaiting_continue = False
                    loop.call_soon_threadsafe(send_continue)
                future = asyncio.run_coroutine_threadsafe(_next_piece(receive, response), loop)
                try:
                    piece = future.result(read_timeout)
                except TimeoutError:
                    future.cancel()
                    log.warning(
                        "client sent no body for too long; dropping the request", timeout_s=read_timeout
                    )
                    raise ClientDisconnected("the client sent nothing") from None
                response.cell[0] = time.monotonic()
                return piece

            body = _StreamedInput(first.get("body", b""), pull)
        else:
            body = io.BytesIO(first.get("body", b""))
            response.body_done = True

        def stream(chunk: bytes, final: bool = False) -> None:  # request thread
            if response.disconnected or self._closing:
                raise ClientDisconnected("the client is gone")
            piece = self._send_piece(send, receive, response, chunk, final, lost is None)
            asyncio.run_coroutine_threadsafe(piece, loop).result()
            response.cell[0] = time.monotonic()

        budget: TimeBudget | None = ext.get(BUDGET)
        running: concurrent.futures.Future[list[bytes] | None] | None = None
        try:
            environ = _environ(scope, body, multithread=self.threads > 1)
            response.zerocopy = zerocopy
            response.scope = scope
            gate = self.gate
            if gate is not None:
                admitted = gate.poll(budget)
                if admitted is None:
                    admitted = await gate.wait(budget)
                if not admitted:
                    if budget is not None:
                        budget.end(SHED)  # its answer is a 503 (http/deadlines.py)
                    return
            try:
                running = self._executor.submit(self._run_app, environ, response, stream, budget)
            except BaseException:
                if gate is not None:
                    gate.release()
                raise
            try:
                whole = await asyncio.wrap_future(running, loop=loop)
            finally:
                if gate is not None:
                    _give_back_when_done(gate, response, running, loop)
            if whole is not None:  # the body is all here (and the app's iterable closed): one message
                await _send_whole(send, response, whole)
        except asyncio.CancelledError:
            response.disconnected = True  # the server gave up on it: stop the thread's stream too
            if running is not None and not running.done():
                self._interrupted(budget, response, running, loop)
            raise
        finally:
            body.close()
            if lost is not None:
                lost.remove_done_callback(on_lost)
            if response.watcher is not None:
                response.watcher.cancel()

    def _interrupted(
        self,
        budget: TimeBudget | None,
        response: _Response,
        running: concurrent.futures.Future[list[bytes] | None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Its request ended early while its thread runs: cancel the query the
        thread is running. A thread that outlives its expired request by
        ``stuck_grace`` is reported; one whose client left runs on, as under
        any sync server (``stalled_since`` catches a worker that is all stuck)."""
        if budget is None:
            return
        if cancel_running_query(budget):
            budget.interrupted = True
        if budget.outcome == EXPIRED and self.stuck_grace is not None:
            loop.call_later(self.stuck_grace, self._check_stuck, running, response.thread)

    def _check_stuck(self, running: concurrent.futures.Future[list[bytes] | None], ident: int | None) -> None:
        if running.done() or self._closing:
            return
        frame = sys._current_frames().get(ident) if ident is not None else None
        stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
        log.error(
            "request thread still busy after its request timed out; replacing the worker",
            grace_s=self.stuck_grace,
            stack=stack,
        )
        if self.on_stuck is not None:
            self.on_stuck(f"a request thread was stuck {self.stuck_grace:g} s past its request's deadline")

    def _run_app(
        self,
        environ: dict[str, Any],
        response: _Response,
        stream: Callable[..., None],
        budget: TimeBudget | None = None,
    ) -> list[bytes] | None:
        """In a request thread: run the app. Returns the whole body for the loop
        to send, or None when the response was streamed here. Either way the
        app's iterable is closed here: the loop need not come back to this
        thread for it once the body is in hand."""
        if budget is not None:
            if budget.outcome is not None:
                return None  # it ended (deadline, client gone) while it waited for this thread
            budget.running = True
        gate = self.gate
        if gate is not None:
            # the auto target follows how long a thread is busy, from here: not the time
            # its request waited in the executor's queue, which is queue time
            gate.hold(id(response))
        token = current.set(budget)  # the pools bound their waits by it, in this thread
        try:
            return self._run_app_in(environ, response, stream)
        finally:
            current.reset(token)

    def _run_app_in(
        self, environ: dict[str, Any], response: _Response, stream: Callable[..., None]
    ) -> list[bytes] | None:
        response.thread = threading.get_ident()
        cell = response.cell = self._progress_cell()
        cell[0] = time.monotonic()
        response.on_write = stream
        try:
            result = self.app(environ, response.start_response)
        except ClientDisconnected:
            cell[0] = 0.0
            return None  # it left mid-request: nobody to answer
        except Exception:
            cell[0] = 0.0
            return response.fail(sys.exc_info())
        try:
            if isinstance(result, list | tuple) and response.started_status and not response.headers_sent:
                return list(result)  # the common case, in the fewest steps
            return self._finish(result, response, stream)
        finally:
            cell[0] = 0.0
            _close(result)

    def _finish(
        self, result: Iterable[bytes], response: _Response, stream: Callable[..., None]
    ) -> list[bytes] | None:
        if isinstance(result, list | tuple) and not response.headers_sent:
            if not response.started_status:
                return response.fail(_no_start_response())
            return list(result)
        declared = response.declared
        small = declared is not None and declared <= COLLECT_LIMIT
        try:
            if small and response.started_status and not response.headers_sent:
                chunks = _collect(result, declared or 0)
                if not response.headers_sent:
                    return chunks
                result = chunks  # the app called write() meanwhile: these follow what it wrote
            elif isinstance(result, FileWrapper) and self._send_file(result, response, stream):
                return None
            for chunk in result:
                response.write(chunk)
                if response.clamped:
                    break  # past its own Content-Length: what follows cannot be sent
            if not response.headers_sent:
                if not response.started_status:
                    return response.fail(_no_start_response())
                return []  # only empty pieces: the response goes out whole
            stream(b"", final=True)
        except ClientDisconnected:
            pass  # the response cannot be finished; closing the iterator is all
        except Exception:
            if response.headers_sent:
                raise  # bytes went out: the server cuts the connection, never a short "whole" body
            return response.fail(sys.exc_info())
        return None

    def _send_file(self, wrapper: FileWrapper, response: _Response, stream: Callable[..., None]) -> bool:
        """Send a regular file with ``sendfile`` when the protocol lends its
        socket; False to fall back to iterating the wrapper (headers unsent)."""
        region = wrapper.region()
        if region is None or not response.started_status or response.headers_sent:
            return False
        fd, offset, count = region
        if response.declared is None:
            response.headers.append((b"content-length", str(count).encode()))
            response.declared = count
        elif response.declared > count:
            return False  # the file is shorter than declared: the iterating path cuts it
        count = response.declared
        if response.head or response.status in _NO_BODY or count == 0:
            stream(b"", final=True)
            return True
        zerocopy = response.zerocopy
        if zerocopy is None:
            return False
        loop = zerocopy.loop
        response.headers_sent = True
        begin = zerocopy.zerocopy_begin(response.scope, response.start_message(None), count)
        sock = asyncio.run_coroutine_threadsafe(begin, loop).result()
        if sock is None:  # the headers went out, but the socket is not free: copy the file
            for chunk in wrapper:
                response.write(chunk)
                if response.clamped:
                    break
            stream(b"", final=True)
            return True
        try:
            _sendfile(sock, fd, offset, count, self.send_timeout, response.cell)
        except OSError:
            response.disconnected = True
            loop.call_soon_threadsafe(zerocopy.zerocopy_abort, response.scope)
            raise ClientDisconnected("the file could not be sent") from None
        stream(b"", final=True)
        return True

    async def _send_piece(
        self, send: Send, receive: Receive, response: _Response, chunk: bytes, final: bool, watch: bool
    ) -> None:
        if watch and response.watcher is None and response.body_done:
            # without the protocol's "lost" future, only the receive channel says the client
            # left; while the app may still read its body, that read is the one receiving
            response.watcher = asyncio.ensure_future(_watch_disconnect(receive, response))
        messages = []
        if not response.headers_sent:
            response.headers_sent = True
            messages.append(response.start_message(None))
        messages.append({"type": "http.response.body", "body": chunk, "more_body": not final})
        for message in messages:
            try:
                await asyncio.wait_for(send(message), self.send_timeout)
            except TimeoutError:
                response.disconnected = True
                log.warning("client took no data; dropping the response", timeout_s=self.send_timeout)
                raise ClientDisconnected("the client took no data") from None


def _give_back_when_done(
    gate: Gate, response: _Response, running: concurrent.futures.Future[Any], loop: asyncio.AbstractEventLoop
) -> None:
    """The thread's permit (timed from the thread's start, under the id of its
    ``response``) goes back when the thread is free: now, in the loop (the
    usual case: no second wake-up of the loop from the thread), or, when its
    request ended early while it runs, once it returns. One cancelled before a
    thread took it was never timed: no hold is counted for it."""
    if running.done():
        gate.give_back(id(response))
    else:

        def free(_: concurrent.futures.Future[Any]) -> None:
            # holds the response, so that its id is not another request's meanwhile
            loop.call_soon_threadsafe(gate.give_back, id(response))

        running.add_done_callback(free)


def _collect(result: Iterable[bytes], declared: int) -> list[bytes]:
    """The pieces of a response that declared a Content-Length of at most
    COLLECT_LIMIT: gathered here, so that it goes to the loop in the hand-off
    that ran the app, as a list would. (A response of unknown length is
    streamed piece by piece instead: it may be a feed that must not wait for
    its end.)"""
    chunks: list[bytes] = []
    total = 0
    for chunk in result:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"the WSGI app's response yielded {type(chunk).__name__}, not bytes")
        if chunk:
            chunks.append(chunk if isinstance(chunk, bytes) else bytes(chunk))
            total += len(chunk)
            if total > declared:
                break  # longer than declared: cut (with a warning) when sent
    return chunks


def _sendfile(sock: int, fd: int, offset: int, count: int, timeout: float | None, cell: list[float]) -> None:
    """Copy ``count`` bytes of ``fd`` to the non-blocking socket ``sock`` in the
    kernel, waiting (in this request thread) while the socket is full."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    wait_ms = -1 if timeout is None else int(timeout * 1000)
    while count > 0:
        try:
            sent = os.sendfile(sock, fd, offset, min(count, 1 << 30))
        except BlockingIOError:
            if not poller.poll(wait_ms):
                log.warning("client took no data; dropping the response", timeout_s=timeout)
                raise TimeoutError("the client took no data") from None
            continue
        if sent == 0:
            raise OSError("the file ended before its length")
        offset += sent
        count -= sent
        cell[0] = time.monotonic()
