"""``--health-bind``: liveness and readiness over HTTP, answered by the master.

``GET /livez`` answers 200 while the master's loop runs. ``GET /readyz`` answers
200 once every initial worker has been ready, while at least one is ready and
no stop has begun, else 503. Both carry a JSON body: ready workers / wanted,
whether a reload is running, and the migration state. ``GET /metrics`` answers
Prometheus text when metrics are on (:mod:`supervisor.integrations.prometheus`).
Requests are served from
the master's own select loop, without threads and without blocking it: a
client gets 2 s to send its request line and headers.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from supervisor.control.loopserver import LoopServer
from supervisor.http.sockets import accept_pending

MAX_CLIENTS = 16
CLIENT_DEADLINE = 2.0


@dataclass(eq=False)
class Client:
    sock: socket.socket
    started: float
    buffer: bytes = field(default=b"")


class HealthServer(LoopServer[Client]):
    def __init__(
        self,
        sock: socket.socket,
        state: Callable[[], dict[str, Any]],
        selector: selectors.BaseSelector | None,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        sock.setblocking(False)
        super().__init__(sock, selector)
        self._metrics = metrics  # () -> (body, content type)
        self._state = state

    def on_event(self, data: object) -> None:
        """The master's selector found ``data`` (this server or a client) readable."""
        if data is self:
            self.accept()
        elif isinstance(data, Client):
            self.read(data)

    def accept(self) -> None:
        """Take new clients; drop stale or excess ones."""
        for conn in accept_pending(self.sock):  # out of descriptors: the probe fails, not the master
            self._add(Client(conn, time.monotonic()))
        now = time.monotonic()
        for client in list(self._clients):
            if now - client.started > CLIENT_DEADLINE or len(self._clients) > MAX_CLIENTS:
                self._drop(client)

    def read(self, client: Client) -> bool:
        """Read what arrived; answer once the request is complete. True when done."""
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._drop(client)
            return True
        client.buffer += data
        if data and b"\r\n\r\n" not in client.buffer and len(client.buffer) < 8192:
            return False
        line = client.buffer.split(b"\r\n", 1)[0].decode("latin-1").split()
        path = line[1] if len(line) >= 2 else ""
        path = path.split("?", 1)[0]
        if path == "/metrics" and self._metrics is not None:
            status, (payload, kind) = 200, self._metrics()
        else:
            status, body = self.answer(path)
            payload, kind = json.dumps(body).encode(), "application/json"
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):  # a client that left does not get its answer
            client.sock.send(head + payload)
        self._drop(client)
        return True

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        state = self._state()
        if path == "/livez":
            return 200, {"status": "alive"}
        if path == "/readyz":
            return (200 if state["ready"] else 503), state
        return 404, {"error": "try /livez or /readyz"}
