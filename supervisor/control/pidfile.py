"""``--pid FILE``: the master's pid, for init scripts and ``supervise status``.

The file appears whole or not at all (written beside itself, then linked or
renamed into place), so a reader never sees a half-written number. It is
claimed with ``link()``, which fails if the name exists, so two masters started
at once cannot both believe they own it. A file naming a live process is
refused; one naming a dead process is taken over with a warning. Only the
master whose pid the file holds removes it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from supervisor.errors import ConfigError
from supervisor.logging import get_logger

log = get_logger()


def read_pid(path: Path) -> int | None:
    """The pid the file names; None when it is missing or holds no pid."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        raise ConfigError(f"pid file {path}: cannot read it: {exc.strerror}") from None
    first = text.strip().split("\n", 1)[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


class PidFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self._written = False

    def acquire(self) -> None:
        """Write our pid, or raise ConfigError when a live master holds the file."""
        me = os.getpid()
        temp = self.path.with_name(f".{self.path.name}.{me}.tmp")
        try:
            temp.write_text(f"{me}\n", encoding="ascii")
        except OSError as exc:
            raise ConfigError(f"--pid {self.path}: cannot write there: {exc.strerror}") from None
        try:
            try:
                os.link(temp, self.path)
            except FileExistsError:
                self._take_over(temp, me)
            except OSError as exc:
                raise ConfigError(f"--pid {self.path}: cannot create it: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        self._written = True

    def _take_over(self, temp: Path, me: int) -> None:
        held = read_pid(self.path)
        # our own pid: the same master after a --preload re-exec
        if held is not None and held != me and alive(held):
            raise ConfigError(
                f"--pid {self.path}: a master is already running as pid {held} "
                "(`supervise stop --pid FILE` stops it; remove the file if that process is not one)"
            )
        if held != me:
            log.warning("stale pid file taken over", path=str(self.path), stale_pid=held)
        os.replace(temp, self.path)

    def release(self) -> None:
        """Remove the file if it still names this process."""
        with contextlib.suppress(OSError, ConfigError):
            if self._written and read_pid(self.path) == os.getpid():
                self.path.unlink()
        self._written = False
