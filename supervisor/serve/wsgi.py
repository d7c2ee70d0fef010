"""Runner for WSGI apps: uvicorn, with a2wsgi running the app in threads.

Chosen by measurement and by what a supervisor needs (numbers in
docs/serving.md): a threaded WSGI server (waitress) answered a hello-world app
faster, but it cannot finish in-flight requests on shutdown, so it could not
give graceful stops or zero-downtime reloads. Wrapping the app for uvicorn
gives WSGI apps everything the ASGI runner does: graceful stop, polite
keep-alive closing on reload, request counting for --max-requests, and the
heartbeat. Request threads (``--threads``) use this worker's sync ``db.pool``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.serve import asgi
from supervisor.target import Kind, Target

if TYPE_CHECKING:
    from supervisor.worker import Worker


def run(target: Target, worker: Worker, ready: Callable[[], None]) -> int:
    from a2wsgi import WSGIMiddleware

    app = WSGIMiddleware(target.obj, workers=worker.config.threads)
    wrapped = replace(target, obj=app, kind=Kind.ASGI, is_async=True)
    return asgi.run(wrapped, worker, ready, wsgi=True)
