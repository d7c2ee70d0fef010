"""How many CPUs this process may use: its affinity, capped by a container's
CPU limit (cgroup v2 ``cpu.max`` or v1's CFS quota), which the affinity does
not show."""

from __future__ import annotations

import math
import os


def available() -> int:
    """CPUs this process may run on: its affinity (cpusets, taskset), capped by
    a container's CPU limit, which the affinity does not show (a pod limited to
    2 CPUs on a 64-CPU node would otherwise start 64 workers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(_read_cgroup_files())
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def cgroup_cpu_limit(files: dict[str, str]) -> float | None:
    """CPUs allowed by cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD")
    or by cgroup v1's CFS quota and period (quota -1: none); None for no limit."""
    if "cpu.max" in files:
        quota, _, period = files["cpu.max"].strip().partition(" ")
        if quota != "max" and quota.isdigit() and period.strip().isdigit() and int(period):
            return int(quota) / int(period)
        return None
    try:
        quota_us = int(files["cpu.cfs_quota_us"])
        period_us = int(files["cpu.cfs_period_us"])
    except (KeyError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _read_cgroup_files() -> dict[str, str]:
    files: dict[str, str] = {}
    candidates = [
        "/sys/fs/cgroup/cpu.max",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
    ]
    try:  # cgroup v2 outside a namespace: this process's own group, e.g. a systemd slice
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::/") and line.strip() != "0::/":
                    candidates.insert(0, f"/sys/fs/cgroup{line.strip()[3:]}/cpu.max")
    except OSError:
        pass
    for path in candidates:
        name = os.path.basename(path)
        if name in files:
            continue
        try:
            with open(path) as f:
                files[name] = f.read()
        except OSError:
            continue
    return files
