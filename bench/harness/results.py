"""One results format: JSON lines under ``bench/results/``.

Every record names its bench and its configuration (``bench``, ``label``) and
carries ``summary``: metric -> {n, median, min, max}, next to the raw
``runs``/``trials``. Records written by this harness also carry ``schema``
(1), ``at`` (UTC time) and ``host`` (CPUs, load, Python), so a figure can be
traced to the machine and the moment that produced it.

``read`` also takes the files recorded before the harness existed (schema 0):
the HTTP benches' records already had this shape; the records of
``supervisor_bench.py`` (``record``: meta/trial/summary/end) get ``bench``
"supervisor"; ``db_bench.py``'s single JSON document gets ``bench`` "db".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
from collections.abc import Iterable, Iterator
from typing import Any

from harness.peers import BENCH
from harness.procs import loadavg

SCHEMA = 1
RESULTS = os.path.join(BENCH, "results")


def summary(xs: Iterable[float | None]) -> dict[str, Any]:
    vals = [x for x in xs if x is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(vals), "median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def med(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def host() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": loadavg(),
    }


def record(bench: str, label: str, **fields: Any) -> dict[str, Any]:
    """A new record with the common envelope."""
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"schema": SCHEMA, "bench": bench, "label": label, "at": at, "host": host(), **fields}


def append(path: str, rec: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def default_path(bench: str) -> str:
    return os.path.join(RESULTS, f"{bench}-{dt.datetime.now(dt.UTC):%Y%m%d}.jsonl")


def _normalise(rec: dict[str, Any]) -> dict[str, Any]:
    rec.setdefault("schema", 0)
    if "bench" not in rec and "record" in rec:
        rec["bench"] = "supervisor"
        rec.setdefault("label", rec.get("server") or rec["record"])
    return rec


def read(paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Every record of every file, old formats included, in file order."""
    for path in paths:
        with open(path) as f:
            if path.endswith(".json"):
                doc = json.load(f)
                yield {"schema": 0, "bench": "db", "label": os.path.basename(path), **doc}
                continue
            for line in f:
                if line.strip():
                    yield _normalise(json.loads(line))
