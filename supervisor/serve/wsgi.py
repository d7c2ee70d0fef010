"""Runner for WSGI apps: uvicorn, with the WSGI bridge in front of the app.

Through uvicorn, WSGI apps get what the ASGI runner gives: graceful stop, polite
keep-alive closing on reload, request counting for --max-requests and the
heartbeat. The bridge (``_wsgi_bridge``) runs the app in ``--threads`` request
threads, or in the loop itself with one thread (gunicorn's sync model). Why this
server, with numbers: docs/serving.md.
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
    from supervisor.serve._wsgi_bridge import WSGIBridge

    bridge = WSGIBridge(target.obj, threads=worker.config.threads)
    wrapped = replace(target, obj=bridge, kind=Kind.ASGI, is_async=True)
    try:
        return asgi.run(wrapped, worker, ready, wsgi=True)
    finally:
        bridge.shutdown()
