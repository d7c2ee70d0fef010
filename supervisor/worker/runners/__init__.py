"""Runners: what a worker does once it is set up, one row per kind of target.

A runner is ``run(target, runtime) -> exit code``: it calls ``runtime.ready()``
exactly once, when it can do work (``main``: just before calling it; a
server: once it listens), and returns when the target is done or the worker
was asked to stop; an exception means the target crashed. ``runtime``
(:class:`~supervisor.worker.runtime.Runtime`) is all it may use.

A kind that listens is served by the ``--http`` engine (``supervisor.http.engines``);
a new kind of target is one row in :data:`RUNNERS` (and, if it does not
listen, one module here).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.http import engines
from supervisor.target import Kind, Target

if TYPE_CHECKING:
    from supervisor.worker.runtime import Runtime

Runner = Callable[[Target, "Runtime"], int]


@dataclass(frozen=True)
class RunnerInfo:
    module: str | None  # defines run(target, runtime) -> int; None: the --http engine serves it
    listens: bool  # the master binds --bind (default 127.0.0.1:8000) for it


RUNNERS: dict[Kind, RunnerInfo] = {
    Kind.MAIN: RunnerInfo("supervisor.worker.runners.main", listens=False),
    Kind.ASGI: RunnerInfo(None, listens=True),
    Kind.WSGI: RunnerInfo(None, listens=True),
}


def runner_for(kind: Kind, http: str = "uvicorn") -> Runner | None:
    info = RUNNERS.get(kind)
    if info is None:
        return None
    if info.module is None:
        return engines.runner(http)
    run: Runner = importlib.import_module(info.module).run
    return run


def listens(kind: Kind | None) -> bool:
    info = RUNNERS.get(kind) if kind is not None else None
    return info is not None and info.listens
