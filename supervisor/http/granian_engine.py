"""Runner for ASGI and WSGI apps on granian (``--http granian``), on the
sockets the master bound.

granian's HTTP stack is Rust (hyper on tokio); its own server forks workers and
hands each a listening socket. Here each of *our* workers builds granian's
worker object on a duplicate of the master's socket, in-process, so the master,
its signals, heartbeats, reloads and pools stay ours. That is granian's
extension module (``granian._granian``) and the private helpers its server
uses, so the versions this was tested with are pinned in :data:`TESTED` and any
other is refused with a one-line error before a worker forks.

What the uvicorn runner does in its protocol class is done here around the app
(``granian_apps``) and around the listener:

* ready once granian's listeners are set up (an ASGI app's lifespan startup
  and async pools first, in the loop its requests run in);
* heartbeat: from the event loop the ASGI app runs in (a handler blocking it
  gets the worker replaced); a WSGI worker beats from that loop too, and stops
  beating once every request thread has been busy with one request for longer
  than ``--timeout`` (nothing can make progress: gunicorn's sync model);
* stop: granian's own graceful shutdown (stop accepting; idle connections are
  closed, requests in flight are finished);
* retire (a replacement is ready): stop accepting *without* touching a
  connection, answer each keep-alive client's next request with
  ``Connection: close``, and shut down once none is left (or after a keep-alive
  timeout of silence), so no client ever loses a request it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from supervisor.errors import ConfigError
from supervisor.http import forwarded, granian_apps, stack
from supervisor.logging import get_logger
from supervisor.target import Kind, Target

if TYPE_CHECKING:
    from supervisor.http.sockets import Listener
    from supervisor.settings.config import Config
    from supervisor.worker.runtime import Runtime

log = get_logger()

# granian versions whose private worker API this runner was tested with:
# from the first, up to (not including) the second. Keep in step with the
# `granian` extra in pyproject.toml.
TESTED = ((2, 8, 0), (2, 9, 0))
REQUIREMENT = "granian>=2.8,<2.9"

# A retiring worker waits this long for an idle keep-alive client to send its
# next request (answered with Connection: close) before closing on it: uvicorn's
# keep-alive timeout, which the default engine gives such a client.
KEEP_ALIVE_GRACE = 5.0
POLL = 0.05


def warm(kind: Kind | None = None) -> None:
    """Refuse a granian this runner was not tested with, in one line; load its
    extension in the master, so that every fork starts with it."""
    try:
        version = str(_private("granian").__version__)
        _private("granian._granian")  # the extension loads (and is in memory for every fork)
    except ImportError:
        raise ConfigError("--http granian needs granian: pip install 'pg-supervise[granian]'") from None
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    if not TESTED[0] <= found < TESTED[1]:
        raise ConfigError(
            f"--http granian was tested with {REQUIREMENT}, not granian {version}: "
            "pip install 'pg-supervise[granian]'"
        )


def _tls_options(cfg: Config) -> tuple[Any, ...] | None:
    """granian's TLS arguments (its server's ``ssl_ctx`` tuple), or None
    without --ssl-certfile. The files were checked by the master (tls.py)."""
    if not cfg.ssl_certfile:
        return None
    return (
        True,
        os.path.abspath(cfg.ssl_certfile),
        os.path.abspath(cfg.ssl_keyfile or cfg.ssl_certfile),  # a key inside the certificate file
        None,  # no password: refused by engines.check
        "tls1.2",
        os.path.abspath(cfg.ssl_ca_certs) if cfg.ssl_ca_certs else None,
        [],
        cfg.ssl_cert_reqs == "required",
    )


def run(target: Target, runtime: Runtime) -> int:
    warm()
    if not runtime.listeners:
        raise ConfigError(
            f"{target.spec!r} is an HTTP app but no socket is open: pass --bind ADDR, or "
            "--interface asgi to listen on 127.0.0.1:8000"
        )
    wsgi = target.kind is Kind.WSGI
    cfg = runtime.config
    tally = granian_apps.Tally()
    if wsgi:
        obj = forwarded.wsgi(target.obj, cfg.forwarded_allow_ips) if cfg.proxy_headers else target.obj
        obj = granian_apps.budgeted(
            obj,
            cfg.request_timeout,
            # granian runs --threads per listener, all sharing this gate
            runtime.admission.gate(cfg.threads * len(runtime.listeners)),
            forwarded.Trusted(cfg.forwarded_allow_ips).contains,
            cfg.retry_after,
        )
        app: Any = granian_apps.wsgi(obj, tally, cfg.access_log, cfg.request_id_header)
    else:
        app = granian_apps.asgi(stack.wrap(target.obj, cfg, runtime.admission.tally), tally)
    loop = _new_loop()
    try:
        return loop.run_until_complete(_serve(app, wsgi, tally, runtime))
    finally:
        loop.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)  # granian's ASGI helpers look the loop up
    return loop


async def _serve(app: Any, wsgi: bool, tally: granian_apps.Tally, runtime: Runtime) -> int:
    from supervisor.worker.runtime import StoppedBeforeReady

    cfg = runtime.config
    if wsgi:
        runtime.stalled_since = lambda: tally.stalled_since(cfg.threads)
    beats = asyncio.create_task(runtime.beat())
    lifespan = None
    engines: list[_Engine] = []
    try:
        if not wsgi:
            await runtime.open_pools()
            lifespan = await _lifespan_startup(app)
            if lifespan is None:
                return 1  # never ready: the master counts it as a failed boot
        if runtime.stopping():
            return 0
        state = lifespan.state if lifespan is not None else {}
        engines = [_Engine.start(listener, app, wsgi, state, runtime) for listener in runtime.listeners]
        try:
            runtime.ready()
        except StoppedBeforeReady:
            pass
        else:
            await _serve_until_stopped(engines, tally, runtime)
        for engine in engines:
            engine.signal.set()
        await asyncio.gather(*(engine.done.wait() for engine in engines))
        runtime.served(tally.started)
        if lifespan is not None:
            await lifespan.shutdown()
        return 0
    finally:
        beats.cancel()
        if not wsgi:
            await runtime.close_pools()


async def _serve_until_stopped(engines: list[_Engine], tally: granian_apps.Tally, runtime: Runtime) -> None:
    async def count_requests() -> None:
        while True:  # requests served, for the USR1 status line and --max-requests
            runtime.served(tally.started)
            await asyncio.sleep(0.25)

    counter = asyncio.create_task(count_requests())
    try:
        await runtime.stop_requested()
    finally:
        counter.cancel()
    if runtime.retiring:
        await _retire(engines, tally, runtime.config.graceful_timeout)


async def _retire(engines: list[_Engine], tally: granian_apps.Tally, graceful: float) -> None:
    """Let every keep-alive client go with a response, then shut down."""
    for engine in engines:
        engine.stop_accepting()
    tally.closing = True
    # leave granian a share of the grace to finish what is still open
    deadline = time.monotonic() + max(graceful - min(1.0, graceful / 4), 0.0)
    while time.monotonic() < deadline:
        open_connections = sum(engine.connections() for engine in engines)
        silent_for = time.monotonic() - tally.last_activity
        if open_connections == 0 or (tally.in_flight() == 0 and silent_for >= KEEP_ALIVE_GRACE):
            return
        await asyncio.sleep(POLL)


@dataclass
class _Engine:
    """granian's worker on one of the master's listeners."""

    listener: Listener
    fd: int  # our duplicate of the listener, owned by granian once it serves
    signal: Any  # granian's WorkerSignal: set() starts its graceful shutdown
    done: asyncio.Event  # granian has finished: every connection is closed
    worker: Any

    @classmethod
    def start(
        cls, listener: Listener, app: Any, wsgi: bool, state: dict[str, Any], runtime: Runtime
    ) -> _Engine:
        ext = _private("granian._granian")
        futures = _private("granian._futures")
        cfg = runtime.config
        loop = asyncio.get_running_loop()
        uds = listener.sock.family == socket.AF_UNIX
        fd = os.dup(listener.sock.fileno())  # granian closes the listener it is given
        holder = ext.SocketHolder(fd, uds, cfg.backlog)
        signal = ext.WorkerSignal()
        done = asyncio.Event()
        signal.add_cb(lambda: loop.call_soon_threadsafe(done.set))
        no_tls: tuple[Any, ...] = (False, None, None, None, "1.3", None, [], False)
        # granian's own default: its accept loop holds at most this many connections
        backpressure = max(1, cfg.backlog // cfg.workers)
        common: dict[str, Any] = dict(
            worker_id=runtime.worker.id,
            sock=(None, holder),
            ipc=None,
            threads=1,
            blocking_threads=512,
            py_threads=cfg.threads if wsgi else 1,
            py_threads_idle_timeout=30,
            backpressure=backpressure,
            http_mode="1",
            http1_opts=None,
            http2_opts=None,
            static_files=None,
            metrics=(None, None),
        )
        tls: dict[str, Any] = dict(
            zip(
                (
                    "ssl_enabled",
                    "ssl_cert",
                    "ssl_key",
                    "ssl_key_password",
                    "ssl_protocol_min",
                    "ssl_ca",
                    "ssl_crl",
                    "ssl_client_verify",
                ),
                _tls_options(cfg) or no_tls,
                strict=True,
            )
        )
        # what granian's own server does in its worker processes (server/mp.py)
        if wsgi:
            worker = ext.WSGIWorker(**common, **tls)
            callback = _private("granian.wsgi")._callback_wrapper(app, {}, None)
        else:
            worker = ext.ASGIWorker(**common, websockets_enabled=True, **tls)
            asgi_callback = _private("granian.asgi")._callback_wrapper(app, {}, state, None)
            callback = futures._future_watcher_wrapper(asgi_callback)
        scheduler = futures._new_cbscheduler(loop, callback, impl_asyncio=True)
        serve = worker.serve_mtr_uds if uds else worker.serve_mtr
        serve(scheduler, loop, signal)  # returns once the listener is set up and accepting
        return cls(listener, fd, signal, done, worker)

    def stop_accepting(self) -> None:
        """Stop taking connections without touching the open ones.

        granian accepts on ``self.fd``; its only stop (``signal``) also closes
        every idle keep-alive connection at once, racing a request a client may
        be sending on it. So the descriptor is pointed at a listener nobody
        connects to: granian's next accept finds nothing there, and what waits
        in the shared queue is left to the other workers.
        """
        family = self.listener.sock.family
        dummy = socket.socket(family if family != socket.AF_UNIX else socket.AF_INET, socket.SOCK_STREAM)
        with dummy:
            host = "::1" if dummy.family == socket.AF_INET6 else "127.0.0.1"
            dummy.bind((host, 0))
            dummy.listen(1)
            dummy.setblocking(False)  # granian's accept must get EAGAIN, never block
            os.dup2(dummy.fileno(), self.fd)

    def connections(self) -> int:
        """This process's established connections on this listener (TCP only;
        for a unix socket, 'unknown' reads as some, and the retire falls back
        to its keep-alive grace)."""
        if self.listener.sock.family == socket.AF_UNIX:
            return 1
        port = self.listener.sock.getsockname()[1]
        return _established(port)


def _established(port: int) -> int:
    """Connections on local ``port`` held by this process (Linux /proc)."""
    mine = set()
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/self/fd/{name}")
                if link.startswith("socket:["):
                    mine.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows, None)
            for row in rows:
                fields = row.split()
                # local address is HEX_IP:HEX_PORT; state 01 is ESTABLISHED
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in mine:
                    count += 1
    return count


def _private(module: str) -> Any:
    """A granian module, untyped on purpose: its stubs do not describe the
    private worker API used here (the tested versions are what vouches for it)."""
    return importlib.import_module(module)


async def _lifespan_startup(app: Any) -> Any:
    """granian's lifespan driver, started; None when the app's startup failed."""
    lifespan = _private("granian.asgi").LifespanProtocol(app)
    await lifespan.startup()
    if lifespan.interrupt:
        log.error("ASGI lifespan startup failed", exc_info=lifespan.exc)
        return None
    return lifespan
