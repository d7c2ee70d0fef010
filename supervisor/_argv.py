"""Passwords out of command lines.

A process's command line is readable by every user of the machine (``ps``,
``/proc/PID/cmdline``); its environment only by its owner. So:

* :func:`hide_passwords` overwrites, in place, the password of any database
  URL or ``password=`` conninfo in this process's own command line with ``*``
  (Linux: the kernel shows the argument memory as it is now). It runs first
  thing when ``supervise`` starts, before the package's imports; until then
  (the interpreter's start-up: 60 ms measured idle, a few hundred loaded) the password is
  visible. Without setproctitle this is the only rewrite; with it, the master
  and workers later get titles without any setting at all. The only complete
  protection is not to put the password on the command line: use
  ``DATABASE_URL`` / ``SUPERVISE_DATABASE_URL``, a config file, ``PGPASSWORD``
  or ``~/.pgpass``.
* :func:`move_secrets_to_env` is for the processes we start ourselves (the
  ``--preload`` re-exec and its ``supervise check``): the secret options leave
  their command line and travel in their environment instead.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Iterator

# the same shapes redact.redact_secret masks, on the raw bytes of one argument
_URL_PASSWORD = re.compile(rb"://[^:/@\s]*:([^\s/]*)@")
_KV_PASSWORD = re.compile(rb"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def started_as_cli() -> bool:
    """``supervise ...`` or ``python -m supervisor ...`` (not a program that imports us)."""
    argv = sys.orig_argv
    if os.path.basename(sys.argv[0] if sys.argv else "") == "supervise":
        return True
    return any(a == "-m" and b == "supervisor" for a, b in itertools.pairwise(argv))


def password_spans(cmdline: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of passwords in a NUL-separated command line."""
    offset = 0
    for arg in cmdline.split(b"\0"):
        for pattern in (_URL_PASSWORD, _KV_PASSWORD):
            for match in pattern.finditer(arg):
                if match.end(1) > match.start(1):
                    yield offset + match.start(1), offset + match.end(1)
        offset += len(arg) + 1


def hide_passwords() -> bool:
    """Overwrite passwords in this process's command line with ``*``; True if
    there were any and they are gone. A no-op where the kernel does not say
    where the arguments are (not Linux, or a restricted /proc)."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            cmdline = f.read()
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    spans = list(password_spans(cmdline))
    if not spans:
        return False
    # fields after the ')' of the command name start at field 3; arg_start and
    # arg_end are fields 48 and 49 (proc(5))
    fields = stat[stat.rindex(b")") + 2 :].split()
    try:
        arg_start, arg_end = int(fields[45]), int(fields[46])
    except (IndexError, ValueError):
        return False
    if not arg_start or arg_end - arg_start != len(cmdline):
        return False  # rewritten already (a title set): not the layout we read
    import ctypes

    for start, end in spans:
        ctypes.memset(arg_start + start, ord("*"), end - start)
    return True


def move_secrets_to_env(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """``argv`` without the options of secret settings (``--database-url X``,
    ``--database-url=X``), and the ``SUPERVISE_*`` variables that carry their
    values instead. The environment ranks below the command line and above the
    config file, so the child sees the same effective value."""
    from supervisor.settings.config import env_name, settings

    flags = {flag: env_name(f.name) for f, meta in settings() if meta.secret for flag in meta.flags}
    out: list[str] = []
    env: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if arg in flags and i + 1 < len(argv):
            env[flags[arg]] = argv[i + 1]
            i += 2
            continue
        if eq and name in flags:
            env[flags[name]] = value
        else:
            out.append(arg)
        i += 1
    return out, env
