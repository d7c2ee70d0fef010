"""Runners: what a worker does once it is set up.

A runner takes the resolved target, the :class:`~supervisor.worker.Worker`
and a ``ready`` callback it must call exactly once, when it can do work (for
``main``: just before calling it; for a server: once it listens). It returns
the worker's exit code; an exception means the target crashed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from supervisor.target import Kind, Target

if TYPE_CHECKING:
    from supervisor.worker import Worker

Runner = Callable[[Target, "Worker", Callable[[], None]], int]


def runner_for(target: Target) -> Runner | None:
    if target.kind is Kind.MAIN:
        from supervisor.serve.main import run

        return run
    if target.kind is Kind.ASGI:
        from supervisor.serve.asgi import run as run_asgi

        return run_asgi
    if target.kind is Kind.WSGI:
        from supervisor.serve.wsgi import run as run_wsgi

        return run_wsgi
    return None
