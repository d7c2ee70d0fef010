"""Proxy headers for WSGI apps on granian (``--http granian``), where no ASGI
layer sits in front of the app: the same rule the uvicorn runner applies
through uvicorn's ASGI middleware. When the peer is one of
``--forwarded-allow-ips``, REMOTE_ADDR becomes the nearest address in
X-Forwarded-For that is not itself a trusted proxy, and wsgi.url_scheme
comes from X-Forwarded-Proto.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]


class Trusted:
    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.anyone = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        self.contains = lru_cache(maxsize=1024)(self._contains)

    def _contains(self, host: str) -> bool:
        if self.anyone:
            return True
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client(self, forwarded_for: str) -> str:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        if not hops:
            return ""
        if not self.anyone:
            for hop in reversed(hops):  # each proxy appends the peer it saw
                if not self.contains(_host(hop)):
                    return _host(hop)
        return _host(hops[0])


def _host(hop: str) -> str:
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    return hop.rsplit(":", 1)[0] if hop.count(":") == 1 else hop


def wsgi(app: WSGIApp, trusted_entries: Iterable[str]) -> WSGIApp:
    trusted = Trusted(trusted_entries)

    def forwarded(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if trusted.contains(environ.get("REMOTE_ADDR", "")):
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").strip()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            client = trusted.client(environ.get("HTTP_X_FORWARDED_FOR", ""))
            if client:
                environ["REMOTE_ADDR"] = client
        return app(environ, start_response)

    return forwarded
