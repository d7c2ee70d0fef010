"""The pure parts of the Prometheus integration: why a worker's exit is counted as it is."""

from __future__ import annotations

import signal

import pytest

from supervisor.integrations.prometheus import exit_reason

pytest.importorskip("prometheus_client")


def test_exit_reasons():
    assert exit_reason(0, None, "shutdown") == "stopped"
    assert exit_reason(0, None, None) == "finished"
    assert exit_reason(None, signal.SIGKILL, None) == "crashed"
    assert exit_reason(1, None, None) == "crashed"
    assert exit_reason(None, signal.SIGKILL, "heartbeat timeout") == "killed"
