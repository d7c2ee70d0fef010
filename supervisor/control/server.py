"""The control socket: a unix socket the master serves from its own select
loop, without threads, for ``supervise status/reload/scale/stop``.

One request per connection: a JSON object on one line in, a JSON object on
one line out. Only the master's own user (and root) may talk to it: the
socket is created mode 0600, and each peer's credentials are checked
(``SO_PEERCRED``) in case the file's mode was loosened. Nothing here blocks
the loop: a client gets ``CLIENT_DEADLINE`` seconds to send its request and
at most ``MAX_REQUEST`` bytes; a reply the client does not read is dropped
at that deadline too. A ``stop`` caller may stay connected: it reads
end-of-file when the master has exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.control.loopserver import LoopServer
from supervisor.control.paths import make_private_dir, peer_allowed, runtime_dir
from supervisor.errors import ConfigError
from supervisor.http.sockets import accept_pending

MAX_CLIENTS = 16
MAX_WAITERS = 16  # 'stop' callers waiting for the master to exit
MAX_REQUEST = 4096
CLIENT_DEADLINE = 2.0


@dataclass
class Reply:
    body: dict[str, Any]
    then: Callable[[], None] | None = None  # runs once the reply is queued (a reload may re-exec)
    hold: bool = False  # keep the connection until the master exits


Dispatch = Callable[[dict[str, Any]], Reply]


@dataclass(eq=False)
class Client:
    sock: socket.socket
    started: float
    inbox: bytes = b""
    outbox: bytes = b""
    answered: bool = False
    hold: bool = False


def bind(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600. A stale socket of ours
    (nothing accepts on it) is replaced; anything else there is refused."""
    if path.parent == runtime_dir():
        make_private_dir(path.parent)
    try:
        info = path.lstat()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"control socket {path}: {exc.strerror}") from None
    else:
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            raise ConfigError(f"control socket {path}: something else is there (not a socket of ours)")
        if _answers(path):
            raise ConfigError(f"control socket {path}: another master is listening on it")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # born 0600: no window in which another user may connect
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"control socket {path}: cannot bind: {exc.strerror}") from None
    finally:
        os.umask(old)
    sock.listen(MAX_CLIENTS)
    sock.setblocking(False)
    return sock


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class ControlServer(LoopServer[Client]):
    def __init__(
        self, sock: socket.socket, path: Path, dispatch: Dispatch, selector: selectors.BaseSelector | None
    ) -> None:
        super().__init__(sock, selector)
        self.path = path
        self._dispatch = dispatch
        self.alias: Path | None = None  # a link to path under the default name (paths.py)

    def owns(self, data: object) -> bool:
        return data is self or (isinstance(data, Client) and data in self._clients)

    def on_event(self, data: object) -> None:
        if data is self:
            self.accept()
        elif isinstance(data, Client) and data in self._clients:
            if data.outbox:
                self._flush(data)
            elif data.answered:
                self._discard(data)
            else:
                self._read(data)

    def accept(self) -> None:
        for conn in accept_pending(self.sock):
            if not peer_allowed(conn):
                conn.close()
                continue
            self._add(Client(conn, time.monotonic()))
        now = time.monotonic()
        busy = [c for c in self._clients if not c.hold]
        for client in busy:
            if now - client.started > CLIENT_DEADLINE or len(busy) > MAX_CLIENTS:
                self._drop(client)
                busy.remove(client)
        waiters = [c for c in self._clients if c.hold]
        for client in waiters[: max(0, len(waiters) - MAX_WAITERS)]:
            self._drop(client)

    def _read(self, client: Client) -> None:
        try:
            data = client.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        client.inbox += data
        if data and b"\n" not in client.inbox and len(client.inbox) < MAX_REQUEST:
            return
        line = client.inbox.split(b"\n", 1)[0]
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            reply = Reply({"ok": False, "error": "bad request: expected one JSON object on one line"})
        else:
            reply = self._dispatch(request)
        self._answer(client, reply)

    def _answer(self, client: Client, reply: Reply) -> None:
        client.answered = True
        client.hold = reply.hold
        client.outbox = (json.dumps(reply.body, separators=(",", ":")) + "\n").encode()
        self._flush(client)
        if reply.then is not None:
            reply.then()

    def _flush(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        client.outbox = client.outbox[sent:]
        if client.outbox:
            if self._selector is not None:
                self._selector.modify(client.sock, selectors.EVENT_WRITE, client)
        elif client.hold:
            if self._selector is not None:  # read only to notice the caller leaving
                self._selector.modify(client.sock, selectors.EVENT_READ, client)
        else:
            self._drop(client)

    def _discard(self, client: Client) -> None:
        """A caller waiting for the exit sent more, or left."""
        try:
            if client.sock.recv(MAX_REQUEST):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._drop(client)

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
        with contextlib.suppress(OSError):
            if self.alias is not None and self.alias.readlink() == self.path:
                self.alias.unlink()
