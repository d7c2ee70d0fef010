"""The client bookkeeping of the master's own small servers (the health
endpoint, the control socket): served from the master's selector, no thread."""

from __future__ import annotations

import contextlib
import selectors
import socket
from typing import Generic, Protocol, TypeVar


class HasSocket(Protocol):
    sock: socket.socket


C = TypeVar("C", bound=HasSocket)


class LoopServer(Generic[C]):
    """A listening socket and its clients, registered on ``selector``."""

    def __init__(self, sock: socket.socket, selector: selectors.BaseSelector | None) -> None:
        self.sock = sock
        self._selector = selector
        self._clients: list[C] = []
        if selector is not None:
            selector.register(sock, selectors.EVENT_READ, self)

    def _add(self, client: C) -> None:
        client.sock.setblocking(False)
        self._clients.append(client)
        if self._selector is not None:
            self._selector.register(client.sock, selectors.EVENT_READ, client)

    def _drop(self, client: C) -> None:
        if client in self._clients:
            self._clients.remove(client)
        if self._selector is not None:  # before close: the fd number will be reused
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(client.sock)
        client.sock.close()

    def fds(self) -> list[int]:
        """Descriptors a forked worker must not keep."""
        return [self.sock.fileno(), *(c.sock.fileno() for c in self._clients)]

    def close(self) -> None:
        for client in list(self._clients):
            self._drop(client)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.sock)
        self.sock.close()
