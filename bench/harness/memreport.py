"""Markdown tables of bench/memory.py's records (also used by report.py).

``tree``: the sum of Pss over the whole process tree (MiB) at start, after
the warm-up and after all the requests, with the ratios to the app's baseline
server (gunicorn --preload). ``processes``: per role, Pss/USS. ``refork``:
requests per second and failed requests before, during and after a refork.
A cell is the median over the trials, with (min-max) when there are several.
"""

from __future__ import annotations

import re
from typing import Any

from harness import memtree

PHASES = ("start", "warm", "after", "gc")


def fmt(x: float | None, nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def cell(s: dict[str, Any] | None, nd: int = 1) -> str:
    if not s or s.get("n", 0) == 0:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"], nd)
    return f"{fmt(s['median'], nd)} ({fmt(s['min'], nd)}–{fmt(s['max'], nd)})"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _med(rec: dict[str, Any], key: str) -> float | None:
    s = rec.get("summary", {}).get(key)
    return s["median"] if s and s.get("n") else None


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}×"


def _k(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


def tree(recs: list[dict[str, Any]]) -> str:
    """One table per app: | server | start | after warm-up | after N | ratios |."""
    out = []
    for app in sorted({r.get("app", "?") for r in recs if r.get("test") == "tree"}):
        rs = [r for r in recs if r.get("test") == "tree" and r.get("app") == app]
        base_name = rs[0].get("baseline")
        base = next((r for r in rs if r["label"] == base_name), None)
        gc = any("gc.total_pss_mib" in r.get("summary", {}) for r in rs)
        phases = ["start", "warm", "after", *(["gc"] if gc else [])]
        heads = [
            "server",
            "start",
            f"after warm-up ({_k(rs[0].get('warmup'))})",
            f"after {_k(rs[0].get('requests'))}",
            *(["after a full GC in each worker"] if gc else []),
            f"vs {base_name} ({' / '.join(phases)})" if base else f"vs {base_name}: not run",
        ]
        rows = []
        for r in rs:
            cells = [cell(r["summary"].get(f"{p}.total_pss_mib")) for p in phases]
            key = "{}.total_pss_mib".format
            ratios = " / ".join(_ratio(_med(r, key(p)), _med(base, key(p))) for p in phases) if base else "–"
            rows.append([r["label"], *cells, ratios])
        out.append(
            f"{app} app, {rs[0].get('workers')} workers: MiB, sum of Pss over the whole process tree\n\n"
            + table(heads, rows)
        )
    return "\n".join(out)


def _pss_uss(tot: dict[str, Any], role: str) -> str:
    n = tot.get(f"{role}s") or 0
    if not n:
        return "–"
    pss, uss = tot.get(f"{role}_pss_mib"), tot.get(f"{role}_uss_mib")
    if role == "worker" and tot.get("worker_pss_min_mib") is not None:
        each = "–".join(fmt(tot.get(f"worker_{k}_mib")) for k in ("pss_min", "pss_max"))
        each_uss = "–".join(fmt(tot.get(f"worker_{k}_mib")) for k in ("uss_min", "uss_max"))
        return f"{n}: {fmt(pss)} / {fmt(uss)} (each {each} / {each_uss})"
    return f"{n}: {fmt(pss)} / {fmt(uss)}" if n > 1 else f"{fmt(pss)} / {fmt(uss)}"


def titles(procs: list[dict[str, Any]], width: int = 60) -> str:
    """The distinct process titles, numbers as N, each with how many have it."""
    seen: dict[str, int] = {}
    for q in procs:
        t = re.sub(r"\d+", "N", q["title"])[:width]
        seen[t] = seen.get(t, 0) + 1
    return ", ".join(f"`{t}` ×{n}" for t, n in seen.items())


def processes(recs: list[dict[str, Any]]) -> str:
    """The first trial of each record, per phase: Pss / USS (MiB) by role, and titles."""
    rows = []
    for r in recs:
        if r.get("test") != "tree" or not r.get("trials"):
            continue
        t = r["trials"][0]
        for p in PHASES:
            ph = t["phases"].get(p)
            if not ph:
                continue
            tot = memtree.totals(ph) if ph.get("procs") else ph["totals"]
            rows.append(
                [
                    f"{r.get('app')} {r['label']}",
                    p,
                    fmt(tot["total_pss_mib"]),
                    _pss_uss(tot, "master"),
                    _pss_uss(tot, "worker"),
                    _pss_uss(tot, "mold"),
                    _pss_uss(tot, "other"),
                    titles(ph["procs"]),
                ]
            )
    if not rows:
        return ""
    heads = ["app server", "phase", "tree Pss", "master Pss / USS", "workers: n: Pss / USS (each)"]
    heads += ["molds Pss / USS", "others Pss / USS", "titles"]
    return "MiB, first trial\n\n" + table(heads, rows)


def _rate(c: dict[str, Any] | None) -> str:
    if not c:
        return "–"
    return f"{fmt(c['rps'], 0)} ({c['span_s']:g} s)"


def refork(recs: list[dict[str, Any]]) -> str:
    rows = []
    for r in recs:
        if r.get("test") != "refork-load":
            continue
        run = r.get("run")
        if not run:
            rows.append([f"{r.get('app')} {r['label']}", "–", r.get("error", "no run"), "–", "–", "–", "–"])
            continue
        during = run["during"]
        fails = [run["before"], *during, run["after"]]
        rows.append(
            [
                f"{r.get('app')} {r['label']} (--refork-after {r.get('refork')})",
                _rate(run["before"]),
                ", ".join(_rate(d) for d in during) or "no refork seen",
                _rate(run["after"]),
                " / ".join(str(c["failed"]) if c else "–" for c in fails),
                str(run["total"]["failed"]),
                ", ".join(f"{k} {v}" for k, v in run["total"]["errors"].items()) or "–",
            ]
        )
    if not rows:
        return ""
    heads = ["server", "req/s before", "req/s during each refork", "req/s after"]
    heads += ["failed before / during / after", "failed, all", "failures by kind"]
    return table(heads, rows)
