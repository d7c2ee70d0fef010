"""Where the control socket lives. The master and ``supervise status`` (and
reload, scale, stop) compute it the same way from the same settings, so a
command run where the master was started, with the same supervise.toml or
variables, finds it without being told.

* ``--control-socket PATH``: there (``none``: no socket);
* else ``--pid FILE``: beside it, ``NAME.sock`` for ``NAME.pid``;
* else a per-user directory only its owner can enter (``$XDG_RUNTIME_DIR/supervise``,
  or ``/tmp/supervise-UID``), and a name made of the working directory's name
  and a hash of its full path, so two projects on one host do not collide.

A command told neither, run where no master was started, looks through
``socket_dirs()`` for this user's masters (``control/client.py``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.errors import ConfigError

if TYPE_CHECKING:
    from supervisor.settings.config import Config

OFF = "none"
# sun_path is 108 bytes on Linux (104 on the BSDs), the terminating NUL included
MAX_PATH_BYTES = 103


def socket_path(config: Config, cwd: Path | None = None) -> Path | None:
    """The control socket of the master ``config`` describes; None when off."""
    cwd = cwd or Path.cwd()
    if config.control_socket:
        if config.control_socket.strip().lower() == OFF:
            return None
        path = cwd / config.control_socket
    elif config.pid:
        pid = cwd / config.pid
        path = pid.with_suffix(".sock") if pid.suffix == ".pid" else pid.with_name(pid.name + ".sock")
    else:
        path = default_path(cwd)
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise ConfigError(
            f"control socket path is too long for a unix socket ({len(os.fsencode(path))} bytes, "
            f"at most {MAX_PATH_BYTES}): {path}; pass a shorter --control-socket"
        )
    return path


def default_path(cwd: Path) -> Path:
    """The socket of a master started in ``cwd`` without --pid or --control-socket.
    A master that has either also links this name to its socket, so a command
    run from its directory finds it without repeating them."""
    here = cwd.resolve()
    digest = hashlib.sha256(str(here).encode()).hexdigest()[:10]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in here.name)[:40] or "root"
    return runtime_dir() / f"{name}-{digest}.sock"


def link_default(path: Path, cwd: Path | None = None) -> Path | None:
    """Point the working directory's default name at ``path``; the link made,
    or None when there is none to make or it could not be made (it is only a
    convenience: the --pid or --control-socket the master was given still work)."""
    alias = default_path(cwd or Path.cwd())
    if alias == path:
        return None
    try:
        make_private_dir(alias.parent)
        if alias.is_symlink():
            alias.unlink()
        alias.symlink_to(path)
    except (OSError, ConfigError):
        return None
    return alias


def runtime_dir() -> Path:
    """The per-user directory of the default socket (not created here)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "supervise"
    return Path(tempfile.gettempdir()) / f"supervise-{os.getuid()}"


def socket_dirs() -> list[Path]:
    """Where this user's masters put their default sockets (and the links to
    the others): ``runtime_dir()``, and ``/tmp/supervise-UID`` too, which a master
    started without $XDG_RUNTIME_DIR (a systemd service, sudo) uses. Only
    directories that exist and are this user's private ones."""
    out = []
    for path in dict.fromkeys([runtime_dir(), Path(tempfile.gettempdir()) / f"supervise-{os.getuid()}"]):
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
            out.append(path)
    return out


def make_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or check an existing one is ours and private:
    in a shared directory such as /tmp another user could otherwise have made
    it first and put a socket of theirs where ours is looked for."""
    try:
        path.mkdir(mode=0o700, parents=False, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise ConfigError(f"control socket directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(
            f"control socket directory {path} is not a private directory of this user "
            "(it must be owned by us, mode 0700); remove it or pass --control-socket"
        )


def peer_allowed(sock: socket.socket) -> bool:
    """The peer runs as our user or as root (Linux; elsewhere the mode decides)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid in (0, os.getuid())
