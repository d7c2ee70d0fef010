"""The examples run as the docs say (so they cannot rot)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from test_http import free_port, get

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("app", ["examples.web.asgi_app:app", "examples.web.wsgi_app:app"])
def test_web_examples_migrate_then_serve_from_each_worker_pool(supervise, postgres_url, app):
    port = free_port()
    run = supervise(
        app,
        "-w",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--migrations",
        "examples/web/migrations",
        env={"DATABASE_URL": postgres_url, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    run.wait_ready(2)
    assert len(run.wait_event("migration applied", count=2)) == 2
    counts = [json.loads(get(port, "/hello")[1])["visits"] for _ in range(5)]
    assert counts == [1, 2, 3, 4, 5]
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_hello_example_ticks_and_stops(supervise):
    run = supervise("examples.hello:main", "-w", "2", env={"PYTHONPATH": str(ROOT)}, cwd=ROOT)
    run.wait_event("tick", count=2, timeout=10)
    run.signal(signal.SIGINT)
    assert run.wait() == 0
    assert len(run.find("stopping after the current tick")) == 2
