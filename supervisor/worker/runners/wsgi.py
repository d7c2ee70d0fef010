"""Runner for WSGI apps: uvicorn, with the WSGI bridge in front of the app.

Through uvicorn, WSGI apps get what the ASGI runner gives: graceful stop, polite
keep-alive closing on reload, request counting for --max-requests and the
heartbeat. The bridge (``wsgi_bridge``) runs the app in ``--threads`` request
threads; one thread is gunicorn's sync model. Why this server, with numbers:
docs/serving.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.target import Kind, Target
from supervisor.worker.runners import asgi

if TYPE_CHECKING:
    from supervisor.worker.runtime import Runtime


def run(target: Target, runtime: Runtime) -> int:
    from supervisor.worker.runners.wsgi_bridge import WSGIBridge

    cfg = runtime.config
    # a client that takes nothing for --timeout seconds frees its request thread
    bridge = WSGIBridge(target.obj, threads=cfg.threads, send_timeout=cfg.timeout or None)
    # every request thread stuck on its request for --timeout: the heartbeat stops there
    runtime.stalled_since = bridge.stalled_since
    wrapped = replace(target, obj=bridge, kind=Kind.ASGI, is_async=True)
    try:
        return asgi.run(wrapped, runtime, wsgi=True)
    finally:
        bridge.shutdown()
