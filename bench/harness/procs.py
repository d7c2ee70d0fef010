"""Readings from /proc: process state, the process tree, memory, wake-ups, CPU."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import TypedDict

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Stat(TypedDict):
    state: str
    ppid: int
    pgrp: int
    session: int
    ticks: int  # utime + stime
    start: int  # start time in clock ticks: tells a pid from its reuse


def proc_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = data[data.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime/stime are fields 14/15; starttime is 22
    return Stat(
        state=rest[0],
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        ticks=int(rest[11]) + int(rest[12]),
        start=int(rest[19]),
    )


def alive(pid: int, start: int | None = None) -> bool:
    st = proc_stat(pid)
    if st is None or st["state"] in ("Z", "X"):
        return False
    return start is None or st["start"] == start


def children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{tid}/children") as f:
            out.update(int(x) for x in f.read().split())
    return out


def descendants(pid: int) -> set[int]:
    seen: set[int] = set()
    todo = [pid]
    while todo:
        for c in children(todo.pop()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def session_members(sid: int) -> dict[int, int]:
    """Live processes of session ``sid`` (each server runs in its own), pid -> start."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st["session"] == sid and st["state"] not in ("Z", "X"):
                out[int(name)] = st["start"]
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def smaps_rollup(pid: int) -> dict[str, int] | None:
    """kB figures of /proc/<pid>/smaps_rollup, plus USS (private clean + dirty)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except (FileNotFoundError, ProcessLookupError):  # it exited meanwhile (a start-up probe)
        return None
    out["USS"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def _switches(path: str) -> int | None:
    vol = invol = None
    with open(path) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                vol = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                invol = int(line.split()[1])
    return None if vol is None or invol is None else vol + invol


def ctx_main(pid: int) -> int | None:
    """Context switches of the main thread (voluntary + nonvoluntary)."""
    try:
        return _switches(f"/proc/{pid}/status")
    except (FileNotFoundError, ProcessLookupError):
        return None


def ctx_all(pid: int) -> tuple[int | None, int]:
    """(context switches summed over every thread, number of threads)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return None, 0
    for tid in tids:
        # a thread may end between listdir and open
        with contextlib.suppress(FileNotFoundError):
            total += _switches(f"/proc/{pid}/task/{tid}/status") or 0
    return total, len(tids)


def sched_ns(pid: int) -> int | None:
    """CPU time in ns summed over the threads' schedstat (finer than clock ticks)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return None
    for tid in tids:
        with (
            contextlib.suppress(FileNotFoundError, IndexError, ValueError),
            open(f"/proc/{pid}/task/{tid}/schedstat") as f,
        ):
            total += int(f.read().split()[0])
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]
