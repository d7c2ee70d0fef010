"""The CPU count: a container's cgroup limit (v1 and v2), and the default workers it caps."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
        ({"cpu.max": "garbage"}, None),
    ],
)
def test_container_cpu_limit(files, limit):
    from supervisor.settings.cpus import cgroup_cpu_limit

    assert cgroup_cpu_limit(files) == limit


def test_default_workers_is_capped_by_the_container_limit(monkeypatch):
    from supervisor.settings import cpus, declare

    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(cpus, "_read_cgroup_files", lambda: {"cpu.max": "150000 100000"})
    assert declare.default_workers() == 2  # 1.5 CPUs: two workers, not 64
    monkeypatch.setattr(cpus, "_read_cgroup_files", lambda: {"cpu.max": "max 100000"})
    assert declare.default_workers() == 64
