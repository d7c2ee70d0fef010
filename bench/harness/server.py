"""One server under test: launched in its own session, its output captured
line by line with arrival times, stopped by signal and then by SIGKILL of
every process it left behind (by pid and start time, never by name)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from typing import IO

from harness.procs import alive, cmdline, descendants, proc_stat, session_members

# a test app's own log line: `PERFAPP <event> pid=<pid> t=<time.time()>`
APP_EVENT = re.compile(r"PERFAPP (\S+) pid=(\d+) t=([0-9.]+)")
# a readiness hook's line: `BENCH-READY pid=<pid> t=<time.time()>`
READY_MARKER = re.compile(r"BENCH-READY pid=(\d+)(?: t=([0-9.]+))?")


def now() -> float:
    return time.monotonic()


class Server:
    """A launched server: ``lines`` are (seconds since launch, stream, text);
    ``markers`` are (arrival, pid, the hook's own time or None) of ready markers."""

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: str,
        env: dict[str, str],
        port: int | None = None,
        label: str = "",
        log_path: str | None = None,
        clean: str | None = None,
    ) -> None:
        self.argv, self.cwd, self.env, self.port, self.label = argv, cwd, env, port, label
        self.log_path, self.clean = log_path, clean
        self.lines: list[tuple[float, str, str]] = []
        self.markers: list[tuple[float, int, float | None]] = []
        self.cond = threading.Condition()
        self.known: dict[int, int] = {}  # every descendant ever seen: pid -> start
        self.exit_t: float | None = None  # when waitpid returned: the exact exit time
        self.returncode: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.t0 = self.t0_wall = 0.0
        self._threads: list[threading.Thread] = []

    def run_clean(self) -> None:
        if self.clean:
            subprocess.run(
                self.clean, shell=True, env=self.env, check=False, timeout=120,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

    def start(self) -> Server:
        self.run_clean()
        self.t0_wall, self.t0 = time.time(), now()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.pid = self.proc.pid
        log = open(self.log_path, "w") if self.log_path else None  # noqa: SIM115 - closed by the reader
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stderr, "err", log), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, "out", None), daemon=True),
            threading.Thread(target=self._wait, daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def _read(self, pipe: IO[bytes], stream: str, log: IO[str] | None) -> None:
        for raw in pipe:
            t = now() - self.t0
            text = raw.decode(errors="replace").rstrip("\n")
            with self.cond:
                self.lines.append((t, stream, text))
                for m in READY_MARKER.finditer(text):
                    hook_t = float(m.group(2)) - self.t0_wall if m.group(2) else None
                    self.markers.append((t, int(m.group(1)), hook_t))
                self.cond.notify_all()
            if log:
                log.write(f"{t:9.4f} {stream} {text}\n")
        if log:
            log.close()

    def _wait(self) -> None:
        assert self.proc is not None
        rc = self.proc.wait()
        with self.cond:
            self.exit_t, self.returncode = now(), rc
            self.cond.notify_all()

    # -- what it said ---------------------------------------------------------

    def app_events(self, event: str) -> list[tuple[float, int]]:
        """(seconds since launch by the app's own clock, pid) of its ``PERFAPP event`` lines."""
        out = []
        for _, _, text in list(self.lines):
            m = APP_EVENT.search(text)
            if m and m.group(1) == event:
                out.append((float(m.group(3)) - self.t0_wall, int(m.group(2))))
        return out

    def log_times(self, regex: str) -> list[float]:
        r = re.compile(regex)
        return [t for t, _, text in list(self.lines) if r.search(text)]

    def marker_pids(self) -> set[int]:
        with self.cond:
            return {pid for _, pid, _ in self.markers}

    def wait_ready(
        self, n: int, timeout: float, exclude: Iterable[int] = (), after: float | None = None
    ) -> list[tuple[float, int, float | None]] | None:
        """The first ready marker of each of ``n`` distinct pids (not in ``exclude``,
        arrived at or after ``after``), sorted; None on timeout or master exit."""
        excluded, deadline = set(exclude), now() + timeout
        with self.cond:
            while True:
                firsts: dict[int, tuple[float, int, float | None]] = {}
                for t, pid, ht in self.markers:
                    if pid not in excluded and (after is None or t >= after) and pid not in firsts:
                        firsts[pid] = (t, pid, ht)
                if len(firsts) >= n:
                    return sorted(firsts.values())[:n]
                left = deadline - now()
                if left <= 0 or self.exit_t is not None:
                    return None
                self.cond.wait(min(left, 0.25))

    # -- its processes ----------------------------------------------------------

    def track(self) -> set[int]:
        """Remember every live descendant (pid and start time); return them.
        Descendants are found through the parent links (a grandchild adopted by a
        PR_SET_CHILD_SUBREAPER master is its child) and, for a process reparented
        to init, through the session the server was started in (its id is the
        master's pid), which a process keeps unless it calls setsid()."""
        found = descendants(self.pid) | (set(session_members(self.pid)) - {self.pid})
        for p in found:
            st = proc_stat(p)
            if st and p not in self.known:
                self.known[p] = st["start"]
        return found

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float) -> float | None:
        """When the master exited (monotonic), or None if it is still running."""
        deadline = now() + timeout
        with self.cond:
            while self.exit_t is None:
                left = deadline - now()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.exit_t

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 35.0) -> float | None:
        """Send ``sig`` to the master, wait up to ``timeout`` s, then clean up.
        Returns the seconds the master took to exit, None if it had to be killed."""
        if self.proc is None:
            return None
        self.track()
        sent, took = now(), None
        if self.exit_t is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            exited = self.wait_exit(timeout)
            took = exited - sent if exited is not None else None
        # a worker may outlive its master by a moment; give it that before SIGKILL
        deadline = now() + 5
        while took is not None and now() < deadline and any(alive(p, s) for p, s in self.known.items()):
            time.sleep(0.02)
        self.cleanup()
        self.run_clean()
        return took

    def cleanup(self) -> list[tuple[int, str]]:
        """SIGKILL whatever of ours is still alive; returns what had to be killed."""
        killed: list[tuple[int, str]] = []
        if self.proc is None:
            return killed
        if self.exit_t is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                killed.append((self.pid, "master"))
            except ProcessLookupError:
                pass
            self.wait_exit(5)
        targets = dict(self.known)
        targets.update(session_members(self.pid))  # the session id is the master's pid
        for p, start in targets.items():
            if alive(p, start):
                try:
                    os.kill(p, signal.SIGKILL)
                    killed.append((p, " ".join(cmdline(p).split()[:4])))
                except ProcessLookupError:
                    pass
        deadline = now() + 5
        while now() < deadline and any(alive(p, s) for p, s in targets.items()):
            time.sleep(0.01)
        for t in self._threads:
            t.join(timeout=5)
        return killed
