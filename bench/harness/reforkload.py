"""Throughput and failed requests across a refork, under a keep-alive load.

Client threads (harness.load.Load, one keep-alive connection each, closed
loop) hit one path while the process tree is polled every ``every`` s. A
change in the set of workers or molds is a moment of the refork; changes
less than ``gap`` s apart make one episode. Requests are then counted in the
windows before the first episode, during each episode and after the last:
answered (2xx), failed (any other status, or a connection error: reset, EOF,
timeout, refused), requests per second. The load runs until ``after_s`` s
have passed since the last change, and never longer than ``max_s``.

The client is Python: on a small machine it shares the CPUs with the server,
so req/s say how the refork moves throughput, not what the server can do.
"""

from __future__ import annotations

import time
from typing import Any

from harness import memtree
from harness.load import Load

Window = tuple[float, float]


def episodes(changes: list[float], gap: float = 2.0) -> list[Window]:
    """Change times grouped: a change within ``gap`` s of the previous one extends its episode."""
    out: list[Window] = []
    for t in sorted(changes):
        if out and t - out[-1][1] <= gap:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def windows(
    start: float, end: float, eps: list[Window], pad: float = 0.25, skip: float = 1.0
) -> dict[str, Any]:
    """The before/during/after windows (absolute times) of a load from ``start`` to ``end``;
    the first ``skip`` s (connections opening) are not counted."""
    if not eps:
        return {"before": (start + skip, end), "during": [], "after": None}
    during = [(max(start, a - pad), min(end, b + pad)) for a, b in eps]
    after = (during[-1][1], end) if during[-1][1] < end else None
    before = (start + skip, during[0][0]) if during[0][0] > start + skip else None
    return {"before": before, "during": during, "after": after}


def count(events: list[tuple], w: Window | None) -> dict[str, Any] | None:
    """Answered and failed requests that completed in window ``w``, and the rate."""
    if w is None:
        return None
    a, b = w
    ok = failed = 0
    errors: dict[str, int] = {}
    for t, good, status, _pid, err in events:
        if a <= t < b:
            if good:
                ok += 1
            else:
                failed += 1
                key = (err.split(":")[0] if err else f"status {status}") or "?"
                errors[key] = errors.get(key, 0) + 1
    span = b - a
    return {
        "from_s": None,
        "span_s": round(span, 2),
        "ok": ok,
        "failed": failed,
        "errors": errors,
        "rps": round(ok / span, 1) if span > 0 else None,
    }


def per_second(events: list[tuple], start: float, end: float) -> list[list[int]]:
    """[answered, failed] per whole second of the load."""
    n = max(1, int(end - start) + 1)
    out = [[0, 0] for _ in range(n)]
    for t, good, *_ in events:
        i = int(t - start)
        if 0 <= i < n:
            out[i][0 if good else 1] += 1
    return out


def run(
    master: int,
    port: int,
    path: str,
    clients: int = 8,
    max_s: float = 90.0,
    after_s: float = 10.0,
    every: float = 0.1,
    gap: float = 2.0,
) -> dict[str, Any]:
    ld = Load(port, threads=clients, path=path, keepalive=True, timeout=10.0).start()
    start = time.monotonic()
    changes: list[tuple[float, dict[str, Any]]] = []
    prev: tuple[frozenset[int], frozenset[int]] | None = None
    try:
        while (now := time.monotonic()) - start < max_s:
            tree = memtree.roles(master, ld.pids_seen())
            state = (
                frozenset(p for p, (r, _) in tree.items() if r == "worker"),
                frozenset(p for p, (r, _) in tree.items() if r == "mold"),
            )
            if prev is not None and state != prev:
                changes.append(
                    (
                        now,
                        {
                            "t_s": round(now - start, 2),
                            "workers_gone": sorted(prev[0] - state[0]),
                            "workers_new": sorted(state[0] - prev[0]),
                            "molds": sorted(state[1]),
                            "titles": sorted({tree[p][1] for p in state[0] | state[1]}),
                        },
                    )
                )
            prev = state
            if changes and now - changes[-1][0] >= after_s:
                break
            time.sleep(every)
    finally:
        ld.stop()
    end = time.monotonic()
    with ld.lock:
        events = list(ld.events)
    eps = episodes([t for t, _ in changes], gap)
    win = windows(start, end, eps)

    def rel(w: Any) -> Any:
        c = count(events, w)
        if c is not None:
            c["from_s"] = round(w[0] - start, 2)
        return c

    total = count(events, (start, end + 1))
    first = rel((start, min(end, win["before"][0] if win["before"] else start + 1.0)))
    return {
        "path": path,
        "clients": clients,
        "load_s": round(end - start, 2),
        "refork_seen": bool(eps),
        "episodes": [{"from_s": round(a - start, 2), "to_s": round(b - start, 2)} for a, b in eps],
        "changes": [c for _, c in changes],
        "before": rel(win["before"]),
        "during": [rel(w) for w in win["during"]],
        "after": rel(win["after"]),
        "first": first,  # the first second (connections opening), in no window
        "total": total,
        "per_second": per_second(events, start, end),
    }
