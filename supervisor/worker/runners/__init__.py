"""Runners: what a worker does once it is set up, one module per kind of target.

A runner is ``run(target, runtime) -> exit code``: it calls ``runtime.ready()``
exactly once, when it can do work (``main``: just before calling it; a
server: once it listens), and returns when the target is done or the worker
was asked to stop; an exception means the target crashed. ``runtime``
(:class:`~supervisor.worker.runtime.Runtime`) is all it may use.

A new kind of target is one module here and one row in :data:`RUNNERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.target import Kind, Target

if TYPE_CHECKING:
    from supervisor.worker.runtime import Runtime

Runner = Callable[[Target, "Runtime"], int]


@dataclass(frozen=True)
class RunnerInfo:
    module: str  # defines run(target, runtime) -> int; imported only in workers that use it
    listens: bool  # the master binds --bind (default 127.0.0.1:8000) for it


RUNNERS: dict[Kind, RunnerInfo] = {
    Kind.MAIN: RunnerInfo("supervisor.worker.runners.main", listens=False),
    Kind.ASGI: RunnerInfo("supervisor.worker.runners.asgi", listens=True),
    Kind.WSGI: RunnerInfo("supervisor.worker.runners.wsgi", listens=True),
}


# --http: the engines other than uvicorn, each one module serving every kind that listens
ENGINES: dict[str, str] = {
    "granian": "supervisor.worker.runners.granian_engine",
}


def runner_for(kind: Kind, http: str = "uvicorn") -> Runner | None:
    info = RUNNERS.get(kind)
    if info is None:
        return None
    module = ENGINES[http] if info.listens and http in ENGINES else info.module
    run: Runner = importlib.import_module(module).run
    return run


def preload(http: str) -> None:
    """Import the HTTP engine in the master, once for every fork; an engine
    that cannot run here raises ConfigError (one line) before any worker starts."""
    if http in ENGINES:
        importlib.import_module(ENGINES[http]).check()
        return
    for info in RUNNERS.values():
        if info.listens:
            importlib.import_module(info.module)
    importlib.import_module("supervisor.worker.runners.asgi").warm()


def listens(kind: Kind | None) -> bool:
    info = RUNNERS.get(kind) if kind is not None else None
    return info is not None and info.listens
