"""What the uvicorn engine puts around the app and passes to uvicorn from
the HTTP settings (``settings/serving.py``): one place, so the ASGI and WSGI apps
(the WSGI bridge is an ASGI app) get the same server.

Proxy headers are applied here rather than by uvicorn's own switch so that
the access log sits inside them and logs the forwarded client.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from supervisor.http import tls

if TYPE_CHECKING:
    from supervisor.settings.config import Config
    from supervisor.worker.admission import Tally
    from supervisor.worker.runtime import Runtime


def uvicorn_options(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.Config`` for the HTTP settings."""
    options: dict[str, Any] = {
        "access_log": False,  # ours (access_log.py) replaces uvicorn's preformatted line
        "proxy_headers": False,  # applied in wrap(), around the access log
        "timeout_keep_alive": cfg.keep_alive,  # typed int, used as a float delay
        "limit_concurrency": cfg.limit_concurrency or None,
        "ws_ping_interval": cfg.ws_ping_interval or None,
        "ws_ping_timeout": cfg.ws_ping_timeout or None,
        "ws_max_size": cfg.ws_max_size,
    }
    if tls.enabled(cfg):
        # built by us, as the master's start-up check built it (same messages)
        options["ssl_context_factory"] = lambda _config, _default: tls.context(cfg)
        options["ssl_certfile"] = cfg.ssl_certfile  # uvicorn's "https" in its own messages
    return options


def wrap(app: Any, cfg: Config, tally: Tally) -> Any:
    """``app`` (an engine's loaded app) with, from the outside in: the request
    deadlines (``deadlines.py``: it sees the peer before proxy headers rewrite
    it, for X-Request-Start), the proxy headers, the access log."""
    if cfg.access_log:
        from supervisor.http.access_log import AccessLog

        app = AccessLog(app, cfg.request_id_header)
    if cfg.proxy_headers:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app = ProxyHeadersMiddleware(app, trusted_hosts=list(cfg.forwarded_allow_ips))
    from supervisor.http.deadlines import Deadlines
    from supervisor.http.forwarded import Trusted

    return Deadlines(
        app, cfg.request_timeout, tally, Trusted(cfg.forwarded_allow_ips).contains, cfg.retry_after
    )


def polite_websockets(base: type[asyncio.Protocol], runtime: Runtime, grace: float) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's WebSocket protocol), left open when its worker
    retires (a replacement is ready) instead of closed at once with 1012: the
    client keeps its socket until it closes it or ``grace`` seconds pass
    (then it gets 1012, "service restart", and reconnects to a new worker).
    New connections already go to the new workers. A full stop closes at once."""

    def shutdown(self: Any) -> None:
        if runtime.retiring and not getattr(self, "_closing_later", False):
            self._closing_later = True
            asyncio.get_running_loop().call_later(grace, base.shutdown, self)  # type: ignore[attr-defined]
            return
        base.shutdown(self)  # type: ignore[attr-defined]

    return type(f"Polite{base.__name__}", (base,), {"shutdown": shutdown})
