"""The default engine (``--http uvicorn``): uvicorn's server, on the sockets
the master bound, for ASGI apps and, behind the WSGI bridge, WSGI apps.

No HTTP server is written here. Each worker runs ``uvicorn.Server`` on the
inherited listeners, on uvicorn's fast stack when installed (uvloop,
httptools). What differs from plain uvicorn:

* signals stay with the worker's control thread (uvicorn's own handlers are
  not installed); a graceful stop sets ``should_exit``;
* the heartbeat is written from inside the event loop, so a handler that
  blocks the loop longer than ``--timeout`` gets the worker replaced;
* the worker reports ready only after lifespan startup ran and the server
  listens, with ``db.async_pool`` already open;
* a worker *retired* because its replacement is ready (reload, recycle) does
  not cut idle keep-alive connections: it answers each one's next request
  with ``Connection: close`` and closes it then, so clients never see a reset.
  (A full shutdown still closes idle connections at once: nothing would serve
  their next request anyway.)

A WSGI app gets all of this through the bridge (``wsgi_bridge``), which runs
it in ``--threads`` request threads; one thread is gunicorn's sync model. Why
this server, with numbers: docs/serving.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from supervisor.errors import ConfigError
from supervisor.http import protocol, stack
from supervisor.target import Kind, Target

if TYPE_CHECKING:
    from supervisor.worker.runtime import Runtime


def run(target: Target, runtime: Runtime) -> int:
    """Serve ``target`` (ASGI, or WSGI behind the bridge) until stopped."""
    if target.kind is not Kind.WSGI:
        return _serve(target, runtime)
    from supervisor.http.wsgi_bridge import ADMITTED_PER_THREAD, WSGIBridge

    cfg = runtime.config
    # a client that takes nothing for --timeout seconds frees its request thread
    bridge = WSGIBridge(
        target.obj,
        threads=cfg.threads,
        send_timeout=cfg.timeout or None,
        # requests queue for a thread in the managed queue; a few per thread go on to the
        # threads' own queue (wsgi_bridge.ADMITTED_PER_THREAD)
        gate=runtime.admission.gate(ADMITTED_PER_THREAD * cfg.threads),
        on_stuck=runtime.worker.request_recycle,
        stuck_grace=cfg.timeout or None,
    )
    # every request thread stuck on its request for --timeout: the heartbeat stops there
    runtime.stalled_since = bridge.stalled_since
    wrapped = replace(target, obj=bridge, kind=Kind.ASGI, is_async=True)
    try:
        return _serve(wrapped, runtime, wsgi=True)
    finally:
        bridge.shutdown()


def _serve(target: Target, runtime: Runtime, *, wsgi: bool = False) -> int:
    """Serve the ASGI app ``target``. ``wsgi``: it is the bridge around a WSGI
    app (no lifespan; its requests use the sync ``db.pool`` from threads)."""
    import uvicorn

    from supervisor.worker.runtime import StoppedBeforeReady

    if not runtime.listeners:
        raise ConfigError(
            f"{target.spec!r} is an HTTP app but no socket is open: pass --bind ADDR, or "
            "--interface asgi to listen on 127.0.0.1:8000"
        )
    cfg = runtime.config
    config = uvicorn.Config(
        target.obj,
        lifespan="off" if wsgi else "auto",
        ws="none" if wsgi else "auto",  # the bridge answers no WebSocket: do not import one
        log_config=None,  # uvicorn's loggers propagate to our structlog pipeline
        **stack.uvicorn_options(cfg),
        # a little before the worker's own deadline, so uvicorn gets to cancel
        # what is left and run lifespan shutdown itself (uvicorn types it as int,
        # and uses it as asyncio's timeout: fractions work)
        timeout_graceful_shutdown=cast(Any, _drain_time(cfg.graceful_timeout)),
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield  # the worker's control thread owns signals

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if runtime.stopping():
                self.should_exit = True  # asked to stop while starting: shut down cleanly
            elif not self.should_exit:
                try:
                    runtime.ready()
                except StoppedBeforeReady:
                    self.should_exit = True

    config.load()
    config.loaded_app = stack.wrap(config.loaded_app, cfg, runtime.admission.tally)
    limits = protocol.Limits(
        cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size, cfg.header_timeout
    )
    hardened = protocol.protocol_class(config.http_protocol_class, limits, cfg.root_path, wsgi)
    config.http_protocol_class = _polite(hardened, runtime)
    if config.ws_protocol_class is not None:  # close its websockets 0.5 s before uvicorn gives up
        grace = max(_drain_time(cfg.graceful_timeout) - 0.5, 0.1)
        config.ws_protocol_class = stack.polite_websockets(config.ws_protocol_class, runtime, grace)
    server = Server(config)

    async def serve() -> None:
        beats = asyncio.create_task(runtime.beat())

        async def stop_when_asked() -> None:
            await runtime.stop_requested()
            # Stop listening now, not at uvicorn's next 0.1 s tick: a client that
            # lands in the backlog meanwhile would be reset instead of refused.
            for listening in server.servers:
                listening.close()
            if not runtime.worker.molding:
                # and the listeners uvicorn was given duplicates of: once no process of
                # ours holds one open, the kernel refuses new clients instead of queueing
                # them (a mold keeps them for the workers it forks)
                for listener in runtime.listeners:
                    listener.sock.close()
            server.should_exit = True

        stopper = asyncio.create_task(stop_when_asked())

        async def count_requests() -> None:
            # requests served, for the USR1 status line and --max-requests
            while True:
                await asyncio.sleep(0.25)
                runtime.served(server.server_state.total_requests)

        counter = asyncio.create_task(count_requests())
        try:
            if not wsgi:
                await runtime.open_pools()
            if runtime.stopping():
                return  # stopped before serving: no need to start the app at all
            # duplicates: uvicorn closes what it serves on, and a worker that becomes the
            # mold must still hold the listeners for the workers it forks
            await server.serve(sockets=[listener.sock.dup() for listener in runtime.listeners])
        finally:
            beats.cancel()
            stopper.cancel()
            counter.cancel()
            await runtime.close_pools()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve())
    return 0


def warm(kind: Kind | None = None) -> None:
    """In the master, once: import what every worker would import before its
    first request (the protocol, lifespan and event-loop modules uvicorn picks;
    the WSGI bridge for a WSGI app, the WebSocket protocol for an ASGI one), so
    a fork starts with them loaded and a replacement is ready in milliseconds,
    not tens of them. Nothing a worker of this kind cannot use: a WSGI app never
    speaks WebSocket (websockets' modules alone are about 1.3 MiB)."""
    import uvicorn

    if kind is not Kind.ASGI:
        from supervisor.http import wsgi_bridge  # noqa: F401

    async def nothing(scope: Any, receive: Any, send: Any) -> None: ...

    config = uvicorn.Config(nothing, log_config=None, ws="none" if kind is Kind.WSGI else "auto")
    config.load()
    config.get_loop_factory()


def _polite(base: type[asyncio.Protocol], runtime: Runtime) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's httptools or h11 protocol), closing the keep-alive
    connections of a retiring worker after one more response instead of now:
    idle ones, and those whose current response has already gone out saying
    keep-alive."""

    def shutdown(self: Any) -> None:
        cycle = self.cycle
        idle = cycle is None or cycle.response_complete
        # A response whose head is out already promised keep-alive: closing after it
        # (uvicorn's way) resets the client's next request. The next one says close.
        promised = cycle is not None and cycle.response_started and cycle.keep_alive
        if runtime.retiring and (idle or promised) and not self.transport.is_closing():
            self._close_after_next = True
            if self.timeout_keep_alive_task is None:
                # a connection that never sent anything has no keep-alive timer:
                # give it one, so it cannot hold the worker until the deadline
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )
            return
        base.shutdown(self)  # type: ignore[attr-defined]

    def after_new_cycle(method: str) -> Callable[..., Any]:
        def wrapped(self: Any, *args: Any) -> Any:
            result = getattr(base, method)(self, *args)
            if getattr(self, "_close_after_next", False) and self.cycle is not None:
                # httptools then answers with "connection: close"; h11 just closes after it
                self.cycle.keep_alive = False
            return result

        return wrapped

    namespace: dict[str, Any] = {"shutdown": shutdown}
    for method in ("on_headers_complete", "handle_events"):  # httptools, h11
        if hasattr(base, method):
            namespace[method] = after_new_cycle(method)
    return type(f"Polite{base.__name__}", (base,), namespace)


def _drain_time(graceful: float) -> float:
    """uvicorn's share of --graceful-timeout: leave up to 1 s for lifespan shutdown."""
    return max(graceful - min(1.0, graceful / 4), 0.1)
