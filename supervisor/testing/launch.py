"""Run the supervisor as a subprocess and watch its JSON log lines.

``SupervisorProcess`` starts ``python -m supervisor ARGS`` (or any command) in
its own session, so the master and every worker share a process group that
cleanup can kill, and parses each JSON log line as it arrives. Tests wait on
conditions (``wait_event``, ``wait_ready``) instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUPERVISE = [sys.executable, "-m", "supervisor"]


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is ``sid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2 :].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state not in ("Z", "X"):
            out.append(int(entry))
    return out


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class SupervisorProcess:
    """One supervisor process: its log lines (parsed), signals, exit code."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        cmd: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        # A clean environment: the caller's SUPERVISE_* settings would leak in.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISE_")}
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        self.cmd = (cmd or SUPERVISE) + args
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)
                if line.startswith("{"):
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    event["_t"] = time.monotonic()
                    self.events.append(event)

    def find(self, event: str, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
            ]

    def wait_event(
        self, event: str, count: int = 1, timeout: float = 10.0, **match: Any
    ) -> list[dict[str, Any]]:
        """The first ``count`` log events named ``event`` (with fields ``match``).
        Raises AssertionError after ``timeout`` seconds, or at once when the
        process has exited and its output is read to the end without them,
        with its last lines either way."""
        what = f"{count}x {event!r} {match or ''}".rstrip()
        deadline = time.monotonic() + timeout
        while True:
            # read before looking: once the reader is done, every line is in
            ended = self.proc.poll() is not None and not self._reader.is_alive()
            found = self.find(event, **match)
            if len(found) >= count:
                return found
            if ended:
                raise AssertionError(
                    f"supervise exited with code {self.proc.returncode} before {what}\n"
                    f"--- its last lines ---\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n--- output ---\n{self.output()}"
                )
            time.sleep(0.01)

    def final(self, exit_code: int) -> str:
        """The message of the line that reported ``exit_code`` (the run's one-line error)."""
        with self._lock:
            for event in self.events:
                if event.get("exit_code") == exit_code:
                    return str(event["event"])
        raise AssertionError(f"no line with exit_code={exit_code}\n{self.output()}")

    def ready_pids(self) -> dict[int, int]:
        """worker id -> pid of its latest ready worker."""
        return {e["worker"]: e["worker_pid"] for e in self.find("worker ready")}

    def wait_ready(self, n: int, timeout: float = 15.0) -> dict[int, int]:
        """Wait until ``n`` workers have reported ready; worker id -> pid. Fails
        at once, with the master's last lines, if it exits first."""
        self.wait_event("worker ready", count=n, timeout=timeout)
        return self.ready_pids()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 15.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervise did not exit in {timeout} s\n{self.output()}") from None
        self._reader.join(5)
        return code

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines[-80:])

    def close(self) -> None:
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def finish(self) -> list[int]:
        """Clean up: kill whatever is still running; return the pids of processes
        that outlived a master that had already exited (a bug), after killing them."""
        leftovers: list[int] = []
        if self.proc.poll() is None:
            self.kill_all()
        else:
            try:
                wait_until(lambda: not session_pids(self.pid), 3.0, "session to be empty")
            except AssertionError:
                leftovers = session_pids(self.pid)
                self.kill_all()
        self.close()
        return leftovers

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid in session_pids(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2] not in "ZX"
