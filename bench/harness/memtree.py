"""Memory of a server's whole process tree, from /proc/PID/smaps_rollup.

The tree is the master and every process that descends from it, whatever its
parent now: children found through /proc/PID/task/*/children (a grandchild
that a PR_SET_CHILD_SUBREAPER master adopted is its child), plus every member
of the master's session (each server runs in its own, so a process reparented
to init that kept the session is still counted). Each process gets a role:

* ``master``: the process the bench started;
* ``mold``: a process whose title says so (ours, when reforking);
* ``worker``: a title that says ``worker``, a pid that answered a request
  (``X-Worker-Pid``), or a child of the master that is not a known helper;
* ``other``: anything else (multiprocessing's resource tracker, a middle
  process of a double fork, a process reparented away from the master).

Figures are kB as the kernel gives them; totals are MiB. USS is
Private_Clean + Private_Dirty (harness.procs.smaps_rollup).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from typing import Any

from harness import results
from harness.procs import cmdline, descendants, proc_stat, session_members, smaps_rollup

HELPERS = ("resource_tracker", "semaphore_tracker", "forkserver")
KEYS = ("Pss", "USS", "Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Shared_Dirty")
_MOLD = re.compile(r"\bmold\b", re.IGNORECASE)
_WORKER = re.compile(r"\bworker\b", re.IGNORECASE)


def members(master: int) -> set[int]:
    """The master, its descendants and the live members of its session."""
    found = {master} | descendants(master)
    found |= set(session_members(master))
    return found


def role(pid: int, master: int, ppid: int, title: str, served: Iterable[int] = ()) -> str:
    if pid == master:
        return "master"
    if _MOLD.search(title):
        return "mold"
    if pid in set(served) or _WORKER.search(title):
        return "worker"
    if ppid == master and not any(h in title for h in HELPERS):
        return "worker"
    return "other"


def roles(master: int, served: Iterable[int] = ()) -> dict[int, tuple[str, str]]:
    """pid -> (role, title) of the tree now, without reading memory (cheap enough to poll)."""
    served = set(served)
    out = {}
    for pid in members(master):
        st = proc_stat(pid)
        if st is not None and st["state"] not in ("Z", "X"):
            title = " ".join(cmdline(pid).split())[:100]
            out[pid] = (role(pid, master, st["ppid"], title, served), title)
    return out


def _threads(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return None


def snapshot(master: int, served: Iterable[int] = ()) -> dict[str, Any]:
    """Every process of the tree now: pid, ppid, role, title, threads and KEYS (kB)."""
    served = set(served)
    procs = []
    for pid in sorted(members(master)):
        st, mem = proc_stat(pid), smaps_rollup(pid)
        if st is None or mem is None or st["state"] in ("Z", "X"):
            continue
        title = " ".join(cmdline(pid).split())[:100]
        procs.append(
            {
                "pid": pid,
                "ppid": st["ppid"],
                "role": role(pid, master, st["ppid"], title, served),
                "title": title,
                "threads": _threads(pid),
                **{k: mem.get(k, 0) for k in KEYS},
            }
        )
    return {"t": time.monotonic(), "procs": procs}


def _mib(kb: float | None) -> float | None:
    return None if kb is None else kb / 1024


def totals(snap: dict[str, Any]) -> dict[str, Any]:
    """The tree's sums (MiB) and, per role, how many and their Pss/USS."""
    procs = snap["procs"]
    out: dict[str, Any] = {
        "total_pss_mib": _mib(sum(p["Pss"] for p in procs)),
        "total_uss_mib": _mib(sum(p["USS"] for p in procs)),
        "total_rss_mib": _mib(sum(p["Rss"] for p in procs)),
        "processes": len(procs),
    }
    for r in ("master", "worker", "mold", "other"):
        mine = [p for p in procs if p["role"] == r]
        out[f"{r}s"] = len(mine)
        out[f"{r}_pss_mib"] = _mib(sum(p["Pss"] for p in mine)) if mine else None
        out[f"{r}_uss_mib"] = _mib(sum(p["USS"] for p in mine)) if mine else None
    workers = [p for p in procs if p["role"] == "worker"]
    for k in ("Pss", "USS"):
        vals = [p[k] for p in workers]
        out[f"worker_{k.lower()}_med_mib"] = _mib(results.med(vals))
        out[f"worker_{k.lower()}_min_mib"] = _mib(min(vals)) if vals else None
        out[f"worker_{k.lower()}_max_mib"] = _mib(max(vals)) if vals else None
    return out


def workers_of(snap: dict[str, Any]) -> set[int]:
    return {p["pid"] for p in snap["procs"] if p["role"] == "worker"}


def settle(
    master: int,
    n_workers: int,
    served: Iterable[int] = (),
    min_s: float = 3.0,
    max_s: float = 30.0,
    tol_mib: float = 0.3,
    every: float = 0.5,
    stable_for: int = 3,
    alive: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait until the tree holds ``n_workers`` workers and its Pss and its set of
    processes have not changed (within ``tol_mib``) over ``stable_for`` samples,
    at least ``min_s`` and at most ``max_s``; ``alive()`` False stops early.
    Returns the last snapshot and how the wait went."""
    t0 = time.monotonic()
    served = set(served)
    history: list[tuple[float, frozenset[int]]] = []
    while True:
        snap = snapshot(master, served)
        tot = totals(snap)
        history.append((tot["total_pss_mib"] or 0.0, frozenset(p["pid"] for p in snap["procs"])))
        waited = time.monotonic() - t0
        recent = history[-stable_for:]
        steady = (
            len(recent) == stable_for
            and max(h[0] for h in recent) - min(h[0] for h in recent) <= tol_mib
            and len({h[1] for h in recent}) == 1
        )
        enough = tot["workers"] >= n_workers
        if (enough and steady and waited >= min_s) or waited >= max_s or (alive and not alive()):
            settled = bool(enough and steady)
            return snap, {"waited_s": round(waited, 2), "settled": settled, "workers": tot["workers"]}
        time.sleep(every)
