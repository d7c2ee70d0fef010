"""Listening sockets: bound once in the master, inherited by every worker.

Workers accept on the same kernel sockets, so a worker can be replaced
without the address ever going away. TCP listeners get ``TCP_NODELAY`` (which
accepted connections inherit): without it, a keep-alive response can wait for
the client's delayed ACK, about 40 ms a request (the ``uvicorn --workers``
bug measured in our baselines).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from supervisor.errors import ConfigError
from supervisor.settings.config import Config

DEFAULT_BIND = "127.0.0.1:8000"
SD_LISTEN_FDS_START = 3


@dataclass
class Listener:
    address: str  # as the user wrote it, for logs
    sock: socket.socket
    unix_path: str | None = None  # ours to unlink when the master exits

    def close(self) -> None:
        self.sock.close()


def _fail(address: str, exc: OSError) -> ConfigError:
    reason = {
        errno.EADDRINUSE: "address already in use",
        errno.EACCES: "permission denied",
        errno.EADDRNOTAVAIL: "address not available on this machine",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return ConfigError(f"cannot listen on {address}: {reason}")


def _host_port(address: str, setting: str = "bind") -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if (
        not sep
        or not port_text.isdigit()
        or not 0 <= int(port_text) <= 65535
        or (":" in host and not bracketed)
    ):
        kinds = (
            "HOST:PORT or [IPv6]:PORT" if setting != "bind" else "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"
        )
        raise ConfigError(f"{setting}: {address!r} is not {kinds}")
    return host[1:-1] if bracketed else (host or "0.0.0.0"), int(port_text)


def _mode(mode: str | None) -> int | None:
    try:
        return int(mode, 8) if mode is not None else None
    except ValueError:
        raise ConfigError(f"socket_mode: {mode!r} is not an octal mode such as 660") from None


def _fd_number(address: str) -> int:
    number = address.removeprefix("fd://")
    if not number.isdigit():
        raise ConfigError(f"bind: {address!r}: fd:// needs a descriptor number")
    return int(number)


def validate(config: Config) -> None:
    """The syntax of every socket setting, without binding anything, so a bad
    value is refused even where it would not be used yet (before migrations,
    for a target that does not listen)."""
    _mode(config.socket_mode)
    for address in config.bind:
        if address.startswith("unix:"):
            if not address.removeprefix("unix:"):
                raise ConfigError("bind: unix: needs a path, e.g. unix:/run/app.sock")
        elif address.startswith("fd://"):
            _fd_number(address)
        else:
            _host_port(address)
    if config.health_bind:
        _host_port(config.health_bind, "health_bind")


def _tcp(address: str, backlog: int, setting: str = "bind") -> Listener:
    host, port = _host_port(address, setting)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {address}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _fail(address, exc) from None
    return Listener(address, sock)


def _unix(address: str, backlog: int, mode: str | None) -> Listener:
    path = address.removeprefix("unix:")
    if not path:
        raise ConfigError("bind: unix: needs a path, e.g. unix:/run/app.sock")
    permissions = _mode(mode)
    try:
        _clear_stale(address, path)
    except PermissionError as exc:
        raise _fail(address, exc) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if permissions is not None:
            os.chmod(path, permissions)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _fail(address, exc) from None
    return Listener(address, sock, unix_path=path)


def _clear_stale(address: str, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise ConfigError(f"cannot listen on {address}: {path} exists and is not a socket")
        # A socket file nobody answers on is left over from a crash: reuse it.
        # One that answers belongs to a running server: refuse.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)  # a live server with a full backlog must not hang us
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        except (TimeoutError, BlockingIOError):
            raise ConfigError(f"cannot listen on {address}: another server is listening there") from None
        else:
            raise ConfigError(f"cannot listen on {address}: another server is listening there")
        finally:
            probe.close()


def _from_fd(fd: int, address: str) -> Listener:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"cannot use {address}: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ConfigError(f"cannot use {address}: not a listening stream socket")
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Listener(address, sock)


def systemd_fds(environ: dict[str, str] | None = None) -> list[int]:
    """Sockets passed by systemd socket activation (LISTEN_FDS), if meant for us."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def bind(config: Config) -> list[Listener]:
    """Open every listener the config asks for (or the default); all or nothing."""
    listeners: list[Listener] = []
    try:
        addresses = list(config.bind)
        if not addresses:
            fds = systemd_fds()
            if fds:
                return [_from_fd(fd, f"systemd fd {fd}") for fd in fds]
            addresses = [DEFAULT_BIND]
        for address in addresses:
            if address.startswith("unix:"):
                listeners.append(_unix(address, config.backlog, config.socket_mode))
            elif address.startswith("fd://"):
                listeners.append(_from_fd(_fd_number(address), address))
            else:
                listeners.append(_tcp(address, config.backlog))
    except BaseException:
        close(listeners)
        raise
    return listeners


def health(address: str) -> Listener:
    """The --health-bind listener."""
    return _tcp(address, 64, "health_bind")


def accept_pending(sock: socket.socket) -> Iterator[socket.socket]:
    """Every connection waiting on the non-blocking listener ``sock``, for the
    master's own small servers (health, control). Out of descriptors or
    memory, it stops: those clients wait in the backlog, and the master lives;
    a client gone before its accept is skipped."""
    while True:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                return
            continue
        yield conn


def close(listeners: list[Listener], unlink: bool = False) -> None:
    for listener in listeners:
        listener.close()
        if unlink and listener.unix_path:
            with contextlib.suppress(OSError):
                os.unlink(listener.unix_path)


def describe(listener: Listener, tls: bool = False) -> str:
    """The listener as a URL (``https://`` when it speaks TLS), or ``unix:PATH``."""
    name = listener.sock.getsockname()
    if isinstance(name, tuple):
        host, port = name[0], name[1]
        scheme = "https" if tls else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
    return f"unix:{name}" if name else listener.address
