"""Which supervisor/ code a run measured: a fingerprint of its sources and the
git state of the checkout (for the records of ``supervisor_bench.py``)."""

from __future__ import annotations

import hashlib
import os
import subprocess

from harness.peers import BENCH

ROOT = os.path.dirname(BENCH)


def source_fingerprint(base=None):
    h = hashlib.sha256()
    base = base or os.path.join(ROOT, "supervisor")
    for dirpath, dirnames, filenames in sorted(os.walk(base)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                p = os.path.join(dirpath, name)
                h.update(p[len(base) :].encode())
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:16]


def git(*a):
    try:
        return subprocess.run(
            ["git", "-C", ROOT, *a], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
