"""``--reload``: a development watcher that sends the master HUP when a file
changes, so the change rolls out through the ordinary zero-downtime reload
(and a change that does not import keeps the running workers).

The watcher is a separate process started with ``exec`` (not a thread, not a
bare fork): the master stays single-threaded, so the fork guard has no thread
to warn about, and the watcher holds none of the master's descriptors. It
exits when the master does (its parent changes), checked every second.

Run as ``python -m supervisor.master.reloader SPEC`` where SPEC is JSON.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.settings.config import Config

_watcher: subprocess.Popen[bytes] | None = None


def start(config: Config) -> list[str]:
    """Start the watcher for the master (this process); the directories watched."""
    global _watcher
    dirs = [str(Path(d).absolute()) for d in (config.reload_dir or (".",))]
    spec = {
        "master": os.getpid(),
        "dirs": dirs,
        "include": list(config.reload_include),
        "exclude": list(config.reload_exclude),
        "log_level": config.log_level,
        "log_format": config.log_format,
    }
    _watcher = subprocess.Popen(
        [sys.executable, "-m", "supervisor.master.reloader", json.dumps(spec)],
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )
    return dirs


def stop() -> None:
    global _watcher
    if _watcher is not None:
        with contextlib.suppress(ProcessLookupError):
            _watcher.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
            _watcher.wait(2)  # the master's own reap may have collected it already
        _watcher = None


def matches(path: str, root: str, include: list[str], exclude: list[str]) -> bool:
    """A change under ``root`` counts if its file name matches an include glob
    and no part of its path below ``root`` matches an exclude glob."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        parts = Path(path).parts
    if any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in exclude):
        return False
    return any(fnmatch.fnmatch(parts[-1] if parts else path, pattern) for pattern in include)


def _watch(spec: dict[str, Any]) -> None:
    import watchfiles

    from supervisor import logging as slog

    log = slog.get_logger()
    master, dirs = int(spec["master"]), [d for d in spec["dirs"] if os.path.isdir(d)]
    include, exclude = spec["include"], spec["exclude"]

    def wanted(change: watchfiles.Change, path: str) -> bool:
        return any(matches(path, root, include, exclude) for root in dirs)

    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we say what changed ourselves
    announced = False
    for changes in watchfiles.watch(
        *dirs, watch_filter=wanted, rust_timeout=1000, yield_on_timeout=True, raise_interrupt=False
    ):
        if os.getppid() != master:
            return  # the master is gone
        if not announced:  # the first yield: the watch is surely in place now
            announced = True
            log.info("watcher ready", dirs=dirs)
        if changes:
            names = sorted({os.path.relpath(path) for _, path in changes})
            log.info("files changed; reloading", files=names[:10], more=max(0, len(names) - 10) or None)
            try:
                os.kill(master, signal.SIGHUP)
            except ProcessLookupError:
                return


def main() -> None:
    spec = json.loads(sys.argv[1])
    from supervisor import logging as slog

    slog.configure(spec.get("log_level", "info"), spec.get("log_format", "auto"))
    slog.set_process("reloader")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the master; it stops us
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        _watch(spec)


if __name__ == "__main__":
    main()
