"""Runner for WSGI apps: uvicorn, with the WSGI bridge in front of the app.

Through uvicorn, WSGI apps get what the ASGI runner gives: graceful stop, polite
keep-alive closing on reload, request counting for --max-requests and the
heartbeat. The bridge (``_wsgi_bridge``) runs the app in ``--threads`` request
threads; one thread is gunicorn's sync model. Why this server, with numbers:
docs/serving.md.
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

    cfg = worker.config
    # a client that takes nothing for --timeout seconds frees its request thread
    bridge = WSGIBridge(target.obj, threads=cfg.threads, send_timeout=cfg.timeout or None)
    # every request thread stuck on its request for --timeout: the heartbeat stops there
    worker._stalled_since = bridge.stalled_since
    wrapped = replace(target, obj=bridge, kind=Kind.ASGI, is_async=True)
    try:
        return asgi.run(wrapped, worker, ready, wsgi=True)
    finally:
        bridge.shutdown()
