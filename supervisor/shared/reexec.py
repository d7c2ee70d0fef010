"""Reloading new code with --preload: the master re-executes itself.

A preloaded master holds the old code, so forking new workers from it cannot
load new code. On HUP it re-executes itself instead, keeping its pid, its
listening sockets and its workers:

1. a fresh interpreter runs ``supervise check`` with the same arguments; if the
   new code or config is broken, the reload is aborted and nothing changes;
2. the listeners, the old workers' lifeline and their command pipes are made
   inheritable and described in ``SUPERVISE_REEXEC``; then ``os.execv``. Both
   new processes get secret options (the database URL) in their environment,
   not on their command line (see _argv.py);
3. the new image imports the new code, adopts the sockets instead of binding,
   boots its own workers and, once they are all ready, retires the adopted old
   ones through their command pipes (they close keep-alive clients politely).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from supervisor import _argv

ENV = "SUPERVISE_REEXEC"
# set for the `supervise check` a running master runs on its new code: the
# sockets it would bind are the master's own, so it does not try them
CHECKING_NEW_CODE = "SUPERVISE_CHECKING_NEW_CODE"


@dataclass
class Adopted:
    """A worker of the previous master image, serving until the new ones are ready."""

    pid: int
    slot: int
    command_fd: int
    kill_at: float | None = None


@dataclass
class Handover:
    listeners: list[tuple[int, str, str | None]]  # fd, address, unix path
    lifelines: list[int]  # write ends the handed-over workers watch (one per image)
    workers: list[Adopted]


def check_new_code(timeout: float) -> str | None:
    """Run ``supervise check`` with this process's arguments in a fresh
    interpreter; None when it passes, else its one-line error."""
    argv, secrets = _argv.move_secrets_to_env([sys.executable, *sys.orig_argv[1:]])
    command = _as_check(argv)
    if command is None:
        return None  # not started through the CLI (a Supervisor script): nothing to check with
    env = {k: v for k, v in os.environ.items() if k != ENV} | secrets | {CHECKING_NEW_CODE: "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"checking the new code took longer than {timeout:g} s"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("supervise: error: ") if lines else f"exit {done.returncode}"


def _as_check(argv: list[str]) -> list[str] | None:
    """``... supervise [run] TARGET OPTS`` -> ``python -m supervisor check TARGET OPTS``."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg.endswith("supervise") or (arg == "supervisor" and argv[i - 1] == "-m"):
            rest = argv[i + 1 :]
            if rest and rest[0] == "run":
                rest = rest[1:]
            return [sys.executable, "-m", "supervisor", "check", *rest]
    return None


def _fds(handover: Handover) -> list[int]:
    return (
        [fd for fd, _, _ in handover.listeners]
        + handover.lifelines
        + [w.command_fd for w in handover.workers]
    )


def execute(handover: Handover) -> None:
    """Replace this process image; if exec fails, undo and raise OSError."""
    for fd in _fds(handover):
        os.set_inheritable(fd, True)
    os.environ[ENV] = json.dumps(
        {
            "listeners": handover.listeners,
            "lifelines": handover.lifelines,
            "workers": [[w.pid, w.slot, w.command_fd] for w in handover.workers],
        }
    )
    # the new image must not show the password in `ps` either: it takes it from
    # the environment, where only its owner can read it
    argv, secrets = _argv.move_secrets_to_env([sys.executable, *sys.orig_argv[1:]])
    previous = {name: os.environ.get(name) for name in secrets}
    os.environ.update(secrets)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, argv)
    except OSError:
        # still the old image: workers it forks later must not inherit these
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.environ.pop(ENV, None)
        for fd in _fds(handover):
            os.set_inheritable(fd, False)
        raise


def received() -> Handover | None:
    """What the previous image handed over, if this process is a re-exec."""
    raw = os.environ.pop(ENV, None)
    if not raw:
        return None
    data = json.loads(raw)
    handover = Handover(
        [(fd, addr, path) for fd, addr, path in data["listeners"]],
        list(data["lifelines"]),
        [Adopted(pid, slot, fd) for pid, slot, fd in data["workers"]],
    )
    for fd in _fds(handover):
        os.set_inheritable(fd, False)  # ours again: workers forked from now close them
    return handover
