"""Prometheus metrics end to end: supervise with metrics on, scrape, kill -9 a worker, scrape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from integrations_util import free_port
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_until

pytest.importorskip("prometheus_client")


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["content-type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def up_pids(samples) -> dict[str, str]:
    """worker id -> pid of each live worker_up series."""
    return {
        dict(labels)["worker"]: dict(labels)["pid"]
        for (name, labels), v in samples.items()
        if name == "supervise_worker_up" and v == 1
    }


def test_metrics_follow_workers_through_a_crash(supervise, tmp_path, postgres_url):
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    (metrics_dir).mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"")  # a previous run's file: cleared
    run = supervise(
        "dbapp:hold",
        "-w",
        "2",
        "--health-bind",
        f"127.0.0.1:{port}",
        env={"DATABASE_URL": postgres_url, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )
    pids = run.wait_ready(2)
    first = wait_until(
        lambda: (lambda s: s if len(up_pids(s)) == 2 else None)(scrape(port)), 10, "two live workers"
    )
    assert up_pids(first) == {"1": str(pids[1]), "2": str(pids[2])}
    assert value(first, "supervise_workers_started_total") == 2
    assert value(first, "supervise_pool_size", worker="1", database="db", pid=str(pids[1])) == 1

    os.kill(pids[1], signal.SIGKILL)
    run.wait_event("worker ready", count=3)
    new = run.ready_pids()[1]
    after = wait_until(
        lambda: (lambda s: s if up_pids(s).get("1") == str(new) else None)(scrape(port)),
        10,
        "the replacement's live gauges",
    )
    assert value(after, "supervise_workers_started_total") == 3
    assert value(after, "supervise_workers_exited_total", reason="crashed") == 1
    # the dead worker's live gauges are gone, not left at their last value
    assert not [labels for (_, labels) in after if ("pid", str(pids[1])) in labels]
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_the_core_runs_without_prometheus_client(tmp_path):
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import supervisor, supervisor.master, supervisor.control.health, supervisor.cli\n"
        "from supervisor.hooks import Hooks\n"
        "from supervisor.integrations import prometheus\n"
        "assert prometheus.enable(Hooks()) is None\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("ok"), out.stderr
    assert "prometheus_client is not installed" in out.stdout + out.stderr
