"""Load on a server under test: a small HTTP/1.1 client, closed-loop client
threads that record who answered, and wrk (bounded by ``-d``) with its output
parsed. Every test app response carries ``X-Worker-Pid``, which is how a
bench learns which worker served a request, whatever the server."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from typing import Any

from harness.server import now

Event = tuple[float, bool, int | None, int | None, str | None]  # (t, ok, status, pid, error)


class HTTPError(Exception):
    pass


def _read_response(sock: socket.socket, buf: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise HTTPError("eof in headers" if buf else "eof before headers")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    length = int(headers.get("content-length", "-1"))
    if length < 0:  # read to EOF
        while chunk := sock.recv(65536):
            rest += chunk
        return status, headers, rest
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise HTTPError("eof in body")
        rest += chunk
    return status, headers, rest[:length]


def _pid(headers: dict[str, str]) -> int | None:
    pid = headers.get("x-worker-pid")
    return int(pid) if pid else None


def http_get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, int | None, bytes]:
    """One request on a fresh connection: (status, worker pid, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        status, headers, body = _read_response(s)
    return status, _pid(headers), body


class KeepAliveClient:
    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.port, self.timeout = port, timeout
        self.sock: socket.socket | None = None

    def get(self, path: str) -> tuple[int, int | None, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        try:
            self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
            status, headers, body = _read_response(self.sock)
            if headers.get("connection", "").lower() == "close":
                self.close()
        except Exception:
            self.close()
            raise
        return status, _pid(headers), body

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


class Load:
    """Closed-loop client threads, each request recorded as (t, ok, status, pid, error).

    ``pause``: seconds to sleep after each request (0: a tight loop);
    ``keepalive``: one connection per thread; ``refused_pause``: sleep after
    ECONNREFUSED (the server does not listen yet).
    """

    def __init__(
        self,
        port: int,
        threads: int = 4,
        path: str = "/",
        pause: float = 0.0,
        keepalive: bool = False,
        refused_pause: float = 0.002,
        timeout: float = 10.0,
    ) -> None:
        self.port, self.path, self.pause = port, path, pause
        self.keepalive, self.refused_pause, self.timeout = keepalive, refused_pause, timeout
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.stop_ev = threading.Event()
        self.pids_first: dict[int, float] = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def _record(self, ev: Event) -> None:
        with self.cond:
            self.events.append(ev)
            if ev[1] and ev[3] is not None and ev[3] not in self.pids_first:
                self.pids_first[ev[3]] = ev[0]
            self.cond.notify_all()

    def _run(self) -> None:
        ka = KeepAliveClient(self.port, timeout=self.timeout) if self.keepalive else None
        while not self.stop_ev.is_set():
            try:
                if ka:
                    status, pid, _ = ka.get(self.path)
                else:
                    status, pid, _ = http_get(self.port, self.path, timeout=self.timeout)
                self._record((now(), status == 200, status, pid, None))
            except ConnectionRefusedError:
                self._record((now(), False, None, None, "refused"))
                time.sleep(self.refused_pause)
                continue
            except Exception as exc:  # reset, eof, timeout
                self._record((now(), False, None, None, type(exc).__name__ + ":" + str(exc)[:60]))
            if self.pause:
                time.sleep(self.pause)
        if ka:
            ka.close()

    def wait_pids(
        self, n: int, timeout: float, exclude: Iterable[int] = (), after: float | None = None
    ) -> float | None:
        """When the n-th distinct worker (not in ``exclude``, answering at or after
        ``after``) first answered, or None on timeout."""
        excluded, deadline = set(exclude), now() + timeout
        with self.cond:
            while True:
                firsts: dict[int, float] = {}
                for t, ok, _st, pid, _e in self.events:
                    if ok and pid is not None and pid not in excluded and (after is None or t >= after):
                        firsts.setdefault(pid, t)
                if len(firsts) >= n:
                    return sorted(firsts.values())[n - 1]
                left = deadline - now()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.05))

    def pids_seen(self, after: float | None = None) -> set[int]:
        with self.lock:
            return {p for (t, ok, _s, p, _e) in self.events if ok and p and (after is None or t >= after)}

    def stop(self) -> None:
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 1)

    def counts(self, t_from: float | None = None, t_to: float | None = None) -> dict[str, Any]:
        ok = fail = refused = 0
        errs: dict[str, int] = {}
        with self.lock:
            for t, good, status, _pid, err in self.events:
                if (t_from is not None and t < t_from) or (t_to is not None and t > t_to):
                    continue
                if good:
                    ok += 1
                elif err == "refused":
                    refused += 1
                else:
                    fail += 1
                    key = err.split(":")[0] if err else f"status {status}"
                    errs[key] = errs.get(key, 0) + 1
        return {"ok": ok, "failed": fail, "refused": refused, "errors": errs}


def probe_ready(
    port: int, n: int, timeout: float = 60.0, exclude: Iterable[int] = (), block_ms: int = 10
) -> tuple[float | None, float | None, set[int]]:
    """Wait until n distinct workers answer, with n+1 threads on /block?ms=..
    so that one busy worker cannot take every connection.
    Returns (first answer, n-th worker's first answer, pids)."""
    excluded = set(exclude)
    ld = Load(port, threads=n + 1, path=f"/block?ms={block_ms}").start()
    try:
        t_all = ld.wait_pids(n, timeout, exclude=excluded)
        with ld.lock:
            oks = [e[0] for e in ld.events if e[1]]
        pids = set(ld.pids_first) - excluded
    finally:
        ld.stop()
    return (min(oks) if oks else None), t_all, pids


# --------------------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(tok: str) -> float | None:
    m = re.match(r"([0-9.]+)(us|ms|s|m)$", tok)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out: str) -> dict[str, Any]:
    r: dict[str, Any] = {
        "rps": None, "requests": None, "non2xx": 0,
        "sock_connect": 0, "sock_read": 0, "sock_write": 0, "sock_timeout": 0,
    }  # fmt: skip
    if m := re.search(r"Requests/sec:\s+([0-9.]+)", out):
        r["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in ([0-9.]+\w+)", out):
        r["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        r["non2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        r["sock_connect"], r["sock_read"], r["sock_write"], r["sock_timeout"] = map(int, m.groups())
    if m := re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out):
        r["lat_avg_ms"], r["lat_max_ms"] = _ms(m.group(1)), _ms(m.group(3))
    for pct in ("50", "75", "90", "99"):
        if m := re.search(rf"\s{pct}%\s+(\S+)", out):
            r[f"lat_p{pct}_ms"] = _ms(m.group(1))
    r["socket_errors"] = r["sock_connect"] + r["sock_read"] + r["sock_write"] + r["sock_timeout"]
    return r


def wrk_cmd(
    port: int,
    path: str = "/",
    threads: int = 2,
    conns: int = 64,
    duration: float = 10,
    timeout: float | None = None,
) -> list[str]:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--latency"]
    if timeout:
        cmd.append(f"--timeout={timeout:g}s")
    return [*cmd, f"http://127.0.0.1:{port}{path}"]


def run_wrk(
    port: int,
    path: str = "/",
    threads: int = 2,
    conns: int = 64,
    duration: float = 10,
    timeout: float | None = None,
) -> dict[str, Any]:
    """One bounded wrk run; the parsed figures (without wrk's raw output)."""
    out = subprocess.run(
        wrk_cmd(port, path, threads, conns, duration, timeout),
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    return parse_wrk(out)
